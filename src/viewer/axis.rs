//! Tick labels of the viewer's log-scale chart axes.
/// A tick of the context axis (log2 of tokens): the token count, in K from 1 024.
pub fn tokens_label(log2: f64) -> String {
    let n = 2f64.powf(log2.round());
    match n {
        n if n >= 1024.0 => format!("{}K", n / 1024.0),
        n => format!("{n}"),
    }
}

/// A tick of a log10 axis: the decade's value as a short number (0.01, 0.1, 1, 10, 1k,
/// 10k, 1M).
pub fn decade_label(log10: f64) -> String {
    let v = 10f64.powf(log10.round());
    match v {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v if v >= 1.0 => format!("{v}"),
        v => format!("{v:.prec$}", prec = (-log10.round()) as usize),
    }
}
