//! The backfill's progress on the terminal: one bar per instrument (minutes
//! done of the total, bars published, estimated time left), drawn on stderr
//! only when stderr is a terminal, with the log lines written above the
//! bars ([`LogWriter`]) instead of through them.
//!
//! What must never happen: escape sequences written where stderr is not a
//! terminal (a file, a pipe, a log collector), or a log line lost or cut by
//! a redraw.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static MULTI: OnceLock<MultiProgress> = OnceLock::new();
/// Whether bars are on the screen now.
static DRAWING: AtomicBool = AtomicBool::new(false);

fn multi() -> &'static MultiProgress {
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// The log's writer (`tracing_subscriber`'s `MakeWriter`): each event goes
/// to stderr in one write, above the progress bars while they are drawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

/// One log event's bytes, written when dropped.
pub struct EventWriter(Vec<u8>);

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let write = move || {
            let _ = std::io::stderr().lock().write_all(&bytes);
        };
        if DRAWING.load(Ordering::Acquire) {
            multi().suspend(write);
        } else {
            write();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(Vec::with_capacity(256))
    }
}

/// The bars on the screen, by instrument: shared by the drawing task and
/// [`Display`]'s drop, which clears them itself (an aborted task drops its
/// future later, and a bar dropped unfinished would be drawn again).
type Bars = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, ProgressBar>>>;

/// The progress display of a backfill, while it lives.
pub struct Display(Option<(tokio::task::JoinHandle<()>, Bars)>);

impl Display {
    /// Starts drawing the backfill's progress if stderr is a terminal
    /// (otherwise the log's `backfill progress` lines and the metrics say
    /// it).
    pub fn start() -> Self {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Display(None);
        }
        DRAWING.store(true, Ordering::Release);
        let bars = Bars::default();
        Display(Some((tokio::spawn(draw(bars.clone())), bars)))
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some((task, bars)) = self.0.take() {
            task.abort();
            let bars = std::mem::take(&mut *bars.lock().unwrap_or_else(|e| e.into_inner()));
            for bar in bars.values() {
                bar.finish_and_clear();
            }
            let _ = multi().clear();
            DRAWING.store(false, Ordering::Release);
        }
    }
}

async fn draw(bars: Bars) {
    use candela_actors::producer::backfill::progress;
    let style = ProgressStyle::with_template("{prefix:>22} [{bar:32}] {pos:>7}/{len:7} min  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        for p in progress() {
            let bar = bars.entry(p.instrument.clone()).or_insert_with(|| {
                let bar = multi().add(ProgressBar::new(p.total_minutes.max(0) as u64));
                bar.set_style(style.clone());
                bar.set_prefix(p.instrument.clone());
                bar
            });
            bar.set_length(p.total_minutes.max(0) as u64);
            bar.set_position(p.done_minutes.max(0) as u64);
            let eta = match (p.finished, p.eta_secs) {
                (true, _) => "done".to_owned(),
                (false, Some(s)) => format!("ETA {}", humanize(s)),
                (false, None) => "ETA …".to_owned(),
            };
            let failed = if p.failed_chunks > 0 {
                format!(", {} chunks failed", p.failed_chunks)
            } else {
                String::new()
            };
            bar.set_message(format!("{} bars, {eta}{failed}", p.bars));
        }
    }
}

/// `s` seconds as `1h02m`, `3m05s` or `12s`.
fn humanize(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3_599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(humanize(12), "12s");
        assert_eq!(humanize(185), "3m05s");
        assert_eq!(humanize(3_720), "1h02m");
    }
}
