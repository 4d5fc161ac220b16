//! What a download shows on stderr: a bar redrawn in place on a terminal (bytes, percent,
//! rate), else one line per file when it is done.

use super::human_bytes;
use std::io::Write;
use std::time::{Duration, Instant};

/// How downloads report their progress on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStyle {
    /// one line redrawn in place as bytes arrive (for a terminal)
    Bar,
    /// one line per file when it is done (for logs and pipes)
    Lines,
    /// nothing
    Quiet,
}

impl ProgressStyle {
    /// A bar where stderr is a terminal, else lines.
    pub fn for_stderr() -> ProgressStyle {
        use std::io::IsTerminal;
        match std::io::stderr().is_terminal() {
            true => ProgressStyle::Bar,
            false => ProgressStyle::Lines,
        }
    }
}

/// Least time between two redraws of the bar.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// One file's transfer, fed by hf-hub's [`hf_hub::api::Progress`] calls.
pub(crate) struct FileProgress {
    style: ProgressStyle,
    name: String,
    /// the file's size in bytes
    total: u64,
    /// bytes of the file on disk, the resumed part included
    done: u64,
    /// bytes already on disk when this attempt began (a resumed partial file)
    resumed: u64,
    started: Instant,
    last_drawn: Option<Instant>,
}

impl FileProgress {
    pub(crate) fn new(style: ProgressStyle, name: &str, total: u64, resumed: u64) -> Self {
        if resumed > 0 && style != ProgressStyle::Quiet {
            eprintln!(
                "  {name}: resuming at {} of {}",
                human_bytes(resumed),
                human_bytes(total)
            );
        }
        FileProgress {
            style,
            name: name.to_string(),
            total,
            done: 0,
            resumed,
            started: Instant::now(),
            last_drawn: None,
        }
    }

    /// Bytes on disk so far, the resumed part included.
    pub(crate) fn done(&self) -> u64 {
        self.done
    }

    /// Bytes per second of this attempt.
    fn rate(&self) -> f64 {
        let s = self.started.elapsed().as_secs_f64().max(1e-3);
        self.done.saturating_sub(self.resumed) as f64 / s
    }

    fn draw(&mut self, force: bool) {
        let now = Instant::now();
        if !force && self.last_drawn.is_some_and(|t| now - t < REDRAW_EVERY) {
            return;
        }
        self.last_drawn = Some(now);
        let percent = match self.total {
            0 => 100.0,
            t => self.done as f64 * 100.0 / t as f64,
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r  {}  {percent:5.1}%  {} / {}  {}/s\x1b[K",
            self.name,
            human_bytes(self.done),
            human_bytes(self.total),
            human_bytes(self.rate() as u64)
        );
        let _ = err.flush();
    }

    /// Ends the bar's line after a failed attempt, so that the error starts on its own.
    pub(crate) fn abandon(&mut self) {
        if self.style == ProgressStyle::Bar && self.last_drawn.is_some() {
            eprintln!();
        }
    }
}

impl hf_hub::api::Progress for &mut FileProgress {
    fn init(&mut self, size: usize, _filename: &str) {
        // hf-hub calls this before each attempt, then reports the resumed bytes as an update
        self.total = size as u64;
        self.done = 0;
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        if self.style == ProgressStyle::Bar {
            self.draw(false);
        }
    }

    fn finish(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        match self.style {
            ProgressStyle::Bar => {
                self.draw(true);
                eprintln!();
            }
            ProgressStyle::Lines => eprintln!(
                "  {}: {} in {secs:.1} s ({}/s)",
                self.name,
                human_bytes(self.done),
                human_bytes(self.rate() as u64)
            ),
            ProgressStyle::Quiet => {}
        }
    }
}
