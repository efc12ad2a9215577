//! Progress bars for long-running commands (one style for all of them).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `total` events, with rate and ETA, drawn on stderr.
pub(crate) fn events_bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:>12} [{bar:40}] {human_pos}/{human_len} events  {per_sec}  ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    bar
}
