//! Incremental detokenization: ids come one at a time, text goes out as soon as it is
//! complete.
//!
//! A character can span several tokens (byte-level BPE pieces, `<0xNN>` byte fallback), and
//! some decoders look at neighbours (SentencePiece strips the first token's leading space).
//! So each step decodes a small window of recent ids twice, without and with the new ones,
//! and emits the difference, but only once it no longer ends in U+FFFD (an unfinished
//! character). The window then moves forward. This is the scheme of HF text-generation-
//! inference and `tokenizers::DecodeStream`; the decoder keeps no reference to the
//! tokenizer, so it can live next to a sequence in the engine.

use super::Tokenizer;

/// Streaming decoder state for one sequence. Pass the same [`Tokenizer`] to every call.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    /// Start of the window: text before it has been emitted and is never decoded again.
    prefix_offset: usize,
    /// End of the part of the window already emitted.
    read_offset: usize,
    skip_special: bool,
}

impl StreamDecoder {
    /// With `skip_special`, special tokens (`<|im_end|>`, bos) produce no text.
    pub fn new(skip_special: bool) -> Self {
        StreamDecoder {
            skip_special,
            ..Default::default()
        }
    }

    /// Adds one id; returns the text it completes (often empty while a character is
    /// still partial).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.ids.push(id);
        let window = &self.ids[self.prefix_offset..];
        let done = tok.decode_with(
            &window[..self.read_offset - self.prefix_offset],
            self.skip_special,
        );
        let now = tok.decode_with(window, self.skip_special);
        if now.len() > done.len() && !now.ends_with('\u{FFFD}') {
            let out = new_suffix(&done, &now);
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            out
        } else {
            String::new()
        }
    }

    /// Ends the stream: returns whatever is still held back (an unfinished character comes
    /// out as U+FFFD, as a full decode would write it) and starts over.
    pub fn flush(&mut self, tok: &Tokenizer) -> String {
        let window = &self.ids[self.prefix_offset..];
        let done = tok.decode_with(
            &window[..self.read_offset - self.prefix_offset],
            self.skip_special,
        );
        let now = tok.decode_with(window, self.skip_special);
        let out = if now.len() > done.len() {
            new_suffix(&done, &now)
        } else {
            String::new()
        };
        *self = StreamDecoder::new(self.skip_special);
        out
    }

    /// All ids pushed since the start (or the last flush).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// The part of `now` after `done`. Normally `done` is a prefix of `now`; if a decoder
/// rewrote earlier text, emit what follows the common prefix rather than fail.
fn new_suffix(done: &str, now: &str) -> String {
    if let Some(rest) = now.strip_prefix(done) {
        return rest.to_string();
    }
    let common = done
        .char_indices()
        .zip(now.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or(done.len().min(now.len()));
    now[common..].to_string()
}

#[cfg(test)]
mod tests {
    use super::new_suffix;

    #[test]
    fn suffix_after_common_prefix() {
        assert_eq!(new_suffix("ab", "abc"), "c");
        assert_eq!(new_suffix("aX", "abc"), "bc");
        assert_eq!(new_suffix("é", "e\u{301}x"), "e\u{301}x");
    }
}
