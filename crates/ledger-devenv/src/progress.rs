//! Progress bars for long-running commands (one style for all of them).

use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};

/// A bar counting `total` events, with rate and ETA, drawn on stderr.
pub fn events_bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:>12} [{bar:40}] {human_pos}/{human_len} events  {rate}/s  ETA {eta}",
    )
    .map(|style| {
        // A whole number with separators: `{per_sec}` prints four decimals.
        style.with_key(
            "rate",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{}", HumanCount(state.per_sec() as u64));
            },
        )
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    bar
}
