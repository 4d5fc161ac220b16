//! Log-probabilities of tokens under the model, as OpenAI's `logprobs` reports them: the
//! log-softmax of a row's raw logits (before temperature, top-k or top-p), and the most
//! likely alternatives. Computed on the host from the logits rows a step brings back,
//! only for requests that ask.

/// OpenAI's largest `top_logprobs`.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One token's log-probability and the `top` most likely tokens at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    /// (id, log-probability), most likely first, lower id first on ties
    pub top: Vec<(u32, f32)>,
}

/// The log-probability of `id` under `logits`, with the `top` most likely tokens.
pub fn token_logprob(logits: &[f32], id: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // in f64: a 150K-entry sum in f32 loses digits the answer keeps
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let log_z = max as f64 + sum.ln();
    let logprob_of = |l: f32| (l as f64 - log_z) as f32;
    TokenLogprob {
        id,
        logprob: logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&l| logprob_of(l)),
        top: top_ids(logits, top)
            .into_iter()
            .map(|i| (i, logprob_of(logits[i as usize])))
            .collect(),
    }
}

/// The `k` largest entries' indices, largest first, lower index first on ties.
fn top_ids(logits: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    // descending by value, NaN last, then ascending by index
    let order = |a: &u32, b: &u32| {
        let (x, y) = (logits[*a as usize], logits[*b as usize]);
        y.partial_cmp(&x)
            .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
            .then(a.cmp(b))
    };
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    if k < ids.len() {
        ids.select_nth_unstable_by(k - 1, order);
        ids.truncate(k);
    }
    ids.sort_unstable_by(order);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_the_log_softmax_and_the_top_tokens_in_order() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5];
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let lp = token_logprob(&logits, 4, 3);
        assert!((lp.logprob as f64 - (0.5 - z.ln())).abs() < 1e-6);
        let ids: Vec<u32> = lp.top.iter().map(|t| t.0).collect();
        // the tie between 1 and 3 goes to the lower id
        assert_eq!(ids, [1, 3, 0]);
        assert!((lp.top[0].1 as f64 - (3.0 - z.ln())).abs() < 1e-6);
        let total: f64 = logits
            .iter()
            .map(|&l| token_logprob(&logits, 0, 0).logprob as f64 - 1.0 + l as f64)
            .map(f64::exp)
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "probabilities sum to {total}");
        // no alternatives asked; more asked than the vocabulary has
        assert!(token_logprob(&logits, 0, 0).top.is_empty());
        assert_eq!(token_logprob(&logits, 0, 9).top.len(), 5);
        // huge logits do not overflow
        let big = [1000.0f32, 1000.0];
        assert!((token_logprob(&big, 0, 1).logprob - (0.5f32).ln()).abs() < 1e-6);
    }
}
