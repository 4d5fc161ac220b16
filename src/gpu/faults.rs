//! GPU errors that no error scope caught, and the loss of the device. wgpu's default is to
//! panic on the first; here both are recorded (and printed) so that waits and readbacks
//! return them as errors: the engine fails the requests of the step they hit and serves
//! on, or stops cleanly and says why once the device is gone.

use std::sync::{Arc, Mutex};

/// What went wrong on one device so far.
#[derive(Default)]
pub struct Faults {
    /// errors not yet handed to a caller
    errors: Mutex<Vec<String>>,
    /// why the device was lost, once it was
    lost: Mutex<Option<String>>,
}

impl Faults {
    /// Faults recorded from `device`'s error handler and device-lost callback.
    pub fn install(device: &wgpu::Device) -> Arc<Faults> {
        let faults = Arc::new(Faults::default());
        let on_error = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            on_error.record_error(e.to_string())
        }));
        let on_lost = faults.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = match message.is_empty() {
                true => format!("{reason:?}"),
                false => format!("{reason:?}: {message}"),
            };
            eprintln!("headroom: the GPU device was lost ({why})");
            *on_lost.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        });
        faults
    }

    /// Records an error as the device's error handler does (fault-injection tests call it
    /// to stand for an out-of-memory error in a step).
    pub fn record_error(&self, message: String) {
        eprintln!("headroom: GPU error: {message}");
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }

    /// Why the device was lost, if it was: nothing more will run on it.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The errors recorded since the last call.
    pub fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
