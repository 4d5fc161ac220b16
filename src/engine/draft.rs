//! Drafts without a model (prompt lookup): the tokens that followed the last earlier
//! occurrence of the sequence's most recent n-gram. Summaries, code edits and extraction
//! repeat spans of their input, and there such drafts are often right; a step then
//! verifies the whole draft in one forward pass (`runner`) and keeps the tokens the model
//! would have chosen itself, so greedy output is what decoding one token a step gives,
//! and sampled output has the same distribution (`ops::OutRow::drafted`).

/// Longest n-gram looked up; shorter ones are tried when it has no earlier match.
pub const MAX_NGRAM: usize = 3;
/// Shortest n-gram looked up: one token alone matches too often to pay.
pub const MIN_NGRAM: usize = 2;
/// How far back a lookup searches (tokens), so a step's drafting stays cheap.
pub const LOOKBACK: usize = 4096;

/// Steps a sequence stops drafting after two drafts in a row were wholly rejected; it
/// doubles with each further one (up to 16 times as long).
pub const PAUSE_STEPS: usize = 8;

/// Lookups in a row that found nothing after which a sequence stops looking for
/// `PAUSE_STEPS` steps (doubling likewise): each lookup scans up to `LOOKBACK` tokens on
/// the engine thread, once per decoding sequence and step.
pub const EMPTY_LOOKUPS_BEFORE_PAUSE: u32 = 4;

/// How many tokens a sequence drafts: more while its drafts are confirmed, fewer when
/// they are not, and none for a while after rejected ones, so that speculation turns
/// itself off where it does not pay (each drafted token is a row the step computes).
#[derive(Clone, Debug)]
pub struct DraftPacer {
    len: usize,
    max: usize,
    /// steps left without drafting
    pause: usize,
    /// wholly rejected drafts in a row
    misses: u32,
    /// lookups in a row that found nothing
    empty: u32,
}

impl DraftPacer {
    pub fn new(max: usize) -> Self {
        DraftPacer {
            len: max,
            max,
            pause: 0,
            misses: 0,
            empty: 0,
        }
    }

    /// Draft tokens to ask for this step (0 while paused).
    pub fn next_len(&mut self) -> usize {
        if self.pause > 0 {
            self.pause -= 1;
            return 0;
        }
        self.len
    }

    /// After a lookup for `wanted` tokens (`next_len`) that found `found`: from
    /// `EMPTY_LOOKUPS_BEFORE_PAUSE` empty ones in a row on, looking pauses, for longer
    /// each further time, as after rejected drafts (text that repeats nothing of its own
    /// costs one scan every few dozen steps instead of one a step).
    pub fn looked_up(&mut self, wanted: usize, found: usize) {
        if wanted == 0 {
            return;
        }
        if found > 0 {
            self.empty = 0;
            return;
        }
        self.empty += 1;
        if self.empty >= EMPTY_LOOKUPS_BEFORE_PAUSE {
            self.pause = PAUSE_STEPS << (self.empty - EMPTY_LOOKUPS_BEFORE_PAUSE).min(4);
        }
    }

    /// After a verified draft of `drafted` tokens of which the first `confirmed` stood.
    pub fn record(&mut self, drafted: usize, confirmed: usize) {
        if drafted == 0 {
            return;
        }
        if confirmed == 0 {
            self.misses += 1;
            self.len = (self.len / 2).max(1);
            if self.misses >= 2 {
                self.pause = PAUSE_STEPS << (self.misses - 2).min(4);
            }
            return;
        }
        self.misses = 0;
        self.len = match confirmed == drafted {
            true => self.len + 1,
            false => confirmed + 1,
        }
        .min(self.max);
    }
}

/// Up to `max` tokens that followed the most recent earlier occurrence of the longest
/// suffix n-gram of `tokens` (`MAX_NGRAM` down to `MIN_NGRAM` tokens); empty when none
/// occurs.
pub fn prompt_lookup(tokens: &[u32], max: usize) -> Vec<u32> {
    if max == 0 {
        return Vec::new();
    }
    let start = tokens.len().saturating_sub(LOOKBACK);
    let window = &tokens[start..];
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if window.len() <= n {
            continue;
        }
        let suffix = &window[window.len() - n..];
        // the latest match that is not the suffix itself and has a token after it
        let found = (0..window.len() - n)
            .rev()
            .find(|&i| &window[i..i + n] == suffix);
        if let Some(i) = found {
            let from = i + n;
            let to = (from + max).min(window.len());
            return window[from..to].to_vec();
        }
    }
    Vec::new()
}

/// How many of `draft` the model confirms: `chosen[r]` is the model's draw after the
/// sequence's last token and the first r draft tokens (its greedy choice, or a sampled
/// draw that keeps the drafted token with its probability), so draft token r stands while
/// it equals `chosen[r]`.
pub fn accepted(draft: &[u32], chosen: &[u32]) -> usize {
    draft.iter().zip(chosen).take_while(|(d, c)| d == c).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_longest_match_drafts_what_followed_it() {
        // "a b c d e ... a b c" drafts "d e"
        let t = [1, 2, 3, 4, 5, 9, 9, 1, 2, 3];
        assert_eq!(prompt_lookup(&t, 2), [4, 5]);
        assert_eq!(prompt_lookup(&t, 10), [4, 5, 9, 9, 1, 2, 3]);
        // the latest of two matches wins
        let t = [1, 2, 7, 1, 2, 8, 1, 2];
        assert_eq!(prompt_lookup(&t, 1), [8]);
        // a 3-gram match beats a later 2-gram one
        let t = [5, 1, 2, 6, 0, 1, 2, 7, 5, 1, 2];
        assert_eq!(prompt_lookup(&t, 1), [6]);
        // nothing repeats; too short; nothing asked
        assert!(prompt_lookup(&[1, 2, 3, 4], 4).is_empty());
        assert!(prompt_lookup(&[1, 1], 4).is_empty());
        assert!(prompt_lookup(&[1, 2, 1, 2], 0).is_empty());
        // a run of one token drafts more of it
        assert_eq!(prompt_lookup(&[3, 3, 3, 3], 2), [3]);
    }

    #[test]
    fn drafts_grow_while_confirmed_and_pause_after_misses() {
        let mut p = DraftPacer::new(4);
        assert_eq!(p.next_len(), 4);
        p.record(4, 1);
        assert_eq!(p.next_len(), 2);
        p.record(2, 2);
        assert_eq!(p.next_len(), 3);
        // one miss halves; a second pauses for PAUSE_STEPS steps, a third for twice that
        p.record(3, 0);
        assert_eq!(p.next_len(), 1);
        p.record(1, 0);
        let paused = (0..PAUSE_STEPS).filter(|_| p.next_len() == 0).count();
        assert_eq!(paused, PAUSE_STEPS);
        assert_eq!(p.next_len(), 1);
        p.record(1, 0);
        let paused = (0..4 * PAUSE_STEPS)
            .take_while(|_| p.next_len() == 0)
            .count();
        assert_eq!(paused, 2 * PAUSE_STEPS);
        // a confirmed draft ends the run of misses
        p.record(1, 1);
        assert_eq!(p.next_len(), 2);
        p.record(0, 0);
        assert_eq!(p.next_len(), 2, "no draft, nothing learned");
    }

    #[test]
    fn lookups_pause_after_finding_nothing_several_times_in_a_row() {
        let mut p = DraftPacer::new(4);
        // empty lookups below the threshold, then a hit: no pause, the count starts over
        for _ in 0..EMPTY_LOOKUPS_BEFORE_PAUSE - 1 {
            let want = p.next_len();
            assert_eq!(want, 4);
            p.looked_up(want, 0);
        }
        let want = p.next_len();
        p.looked_up(want, 3);
        for _ in 0..EMPTY_LOOKUPS_BEFORE_PAUSE - 1 {
            let want = p.next_len();
            assert_eq!(want, 4, "a hit resets the run of empty lookups");
            p.looked_up(want, 0);
        }
        // the threshold's empty lookup pauses for PAUSE_STEPS, the next for twice that
        let want = p.next_len();
        p.looked_up(want, 0);
        let paused = (0..4 * PAUSE_STEPS)
            .take_while(|_| p.next_len() == 0)
            .count();
        assert_eq!(paused, PAUSE_STEPS);
        p.looked_up(4, 0);
        let paused = (0..4 * PAUSE_STEPS)
            .take_while(|_| p.next_len() == 0)
            .count();
        assert_eq!(paused, 2 * PAUSE_STEPS);
        // a paused step asks for nothing and records nothing
        p.looked_up(0, 0);
        assert_eq!(p.next_len(), 4);
    }

    #[test]
    fn a_draft_stands_up_to_its_first_token_the_model_would_not_choose() {
        assert_eq!(accepted(&[4, 5, 6], &[4, 5, 7, 8]), 2);
        assert_eq!(accepted(&[4, 5, 6], &[4, 5, 6, 8]), 3);
        assert_eq!(accepted(&[4], &[9, 1]), 0);
        assert_eq!(accepted(&[], &[9]), 0);
    }
}
