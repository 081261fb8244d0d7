//! Progress of long tasks on stderr, the same for every task of the workspace: a bar with
//! rate and ETA on a terminal, plain dated lines (never a `\r`) when stderr is a file or a
//! pipe, nothing when hidden.
//!
//! ```
//! use jem_io::progress::{Progress, ProgressMode};
//!
//! // `Auto`: a bar on a terminal, otherwise a line at most every 10 s and at the end
//! let p = Progress::new("scoring", 1000, "images", ProgressMode::Hidden);
//! for _ in 0..10 {
//!     p.inc(100);
//! }
//! assert_eq!(p.position(), 1000);
//! p.finish();
//! ```

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// How a [`Progress`] shows itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, [`Lines`](Self::Lines) otherwise.
    Auto,
    /// Plain lines on stderr: at most one per interval, and one at the end.
    Lines,
    /// Nothing.
    Hidden,
}

impl ProgressMode {
    /// [`Auto`](Self::Auto) when `show`, [`Hidden`](Self::Hidden) otherwise: the mapping of a
    /// `progress: bool` option or of `!quiet`.
    pub fn shown(show: bool) -> Self {
        if show { Self::Auto } else { Self::Hidden }
    }
}

/// The progress of one task counted in `unit`s (images, batches, steps, iterations).
pub struct Progress {
    label: String,
    unit: String,
    total: Option<u64>,
    kind: Kind,
}

enum Kind {
    Hidden(AtomicU64),
    Bar(ProgressBar),
    Lines(Mutex<LineState>),
}

struct LineState {
    start: Instant,
    last: Option<Instant>,
    printed: Option<u64>,
    interval: Duration,
    position: u64,
    start_position: u64,
    message: String,
}

/// Lines are written at most this often unless a task asks otherwise.
pub const DEFAULT_LINE_INTERVAL: Duration = Duration::from_secs(10);

impl Progress {
    /// A task named `label` of `total` `unit`s (0: unknown length).
    pub fn new(label: &str, total: u64, unit: &str, mode: ProgressMode) -> Self {
        let total = (total > 0).then_some(total);
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => None,
            ProgressMode::Auto | ProgressMode::Lines => Some(true),
            ProgressMode::Hidden => Some(false),
        };
        let kind = match mode {
            None => Kind::Bar(bar(label, total, unit)),
            Some(true) => Kind::Lines(Mutex::new(LineState {
                start: Instant::now(),
                last: None,
                printed: None,
                interval: DEFAULT_LINE_INTERVAL,
                position: 0,
                start_position: 0,
                message: String::new(),
            })),
            Some(false) => Kind::Hidden(AtomicU64::new(0)),
        };
        Self {
            label: label.to_string(),
            unit: unit.to_string(),
            total,
            kind,
        }
    }

    /// A progress that shows nothing (for library calls that report to nobody).
    pub fn hidden() -> Self {
        Self::new("", 0, "", ProgressMode::Hidden)
    }

    /// Sets the minimum time between plain lines (no effect on a bar).
    pub fn with_line_interval(self, interval: Duration) -> Self {
        if let Kind::Lines(s) = &self.kind {
            lock(s).interval = interval;
        }
        self
    }

    /// Starts counting at `position` (a resumed task): the rate and ETA count only what is
    /// done from here.
    pub fn with_start(self, position: u64) -> Self {
        match &self.kind {
            Kind::Bar(b) => {
                b.set_position(position);
                b.reset_eta();
            }
            Kind::Lines(s) => {
                let mut s = lock(s);
                s.position = position;
                s.start_position = position;
            }
            Kind::Hidden(p) => p.store(position, Ordering::Relaxed),
        }
        self
    }

    /// Whether anything is shown.
    pub fn is_shown(&self) -> bool {
        !matches!(self.kind, Kind::Hidden(_))
    }

    /// Whether it draws a bar (stderr is a terminal).
    pub fn is_bar(&self) -> bool {
        matches!(self.kind, Kind::Bar(_))
    }

    /// Units done so far.
    pub fn position(&self) -> u64 {
        match &self.kind {
            Kind::Bar(b) => b.position(),
            Kind::Lines(s) => lock(s).position,
            Kind::Hidden(p) => p.load(Ordering::Relaxed),
        }
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        match &self.kind {
            Kind::Bar(b) => b.inc(n),
            Kind::Lines(s) => {
                let mut s = lock(s);
                s.position += n;
                self.maybe_line(&mut s, false);
            }
            Kind::Hidden(p) => {
                p.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// `position` units done in all.
    pub fn set_position(&self, position: u64) {
        match &self.kind {
            Kind::Bar(b) => b.set_position(position),
            Kind::Lines(s) => {
                let mut s = lock(s);
                s.position = position;
                self.maybe_line(&mut s, false);
            }
            Kind::Hidden(p) => p.store(position, Ordering::Relaxed),
        }
    }

    /// A status shown after the counts (the latest loss, the current set).
    pub fn set_message(&self, message: impl Into<String>) {
        match &self.kind {
            Kind::Bar(b) => b.set_message(message.into()),
            Kind::Lines(s) => lock(s).message = message.into(),
            Kind::Hidden(_) => {}
        }
    }

    /// Prints `line` above the bar, or plainly (even between the interval's lines); nothing
    /// when hidden.
    pub fn println(&self, line: &str) {
        match &self.kind {
            Kind::Bar(b) => b.println(line),
            Kind::Lines(_) => eprintln!("{line}"),
            Kind::Hidden(_) => {}
        }
    }

    /// Ends the task: the bar is removed, a last line says the totals.
    pub fn finish(&self) {
        match &self.kind {
            Kind::Bar(b) => b.finish_and_clear(),
            Kind::Lines(s) => {
                let mut s = lock(s);
                self.maybe_line(&mut s, true);
            }
            Kind::Hidden(_) => {}
        }
    }

    fn maybe_line(&self, s: &mut LineState, last: bool) {
        let now = Instant::now();
        if s.printed == Some(s.position) {
            return; // nothing new since the last line (e.g. `finish` after the last unit)
        }
        let due = s.last.is_none_or(|t| now.duration_since(t) >= s.interval);
        let done = self.total.is_some_and(|t| s.position >= t);
        if !(last || due || done) {
            return;
        }
        s.last = Some(now);
        s.printed = Some(s.position);
        eprintln!("{}", self.line(s, now));
        let _ = std::io::stderr().flush();
    }

    fn line(&self, s: &LineState, now: Instant) -> String {
        let secs = now.duration_since(s.start).as_secs_f64();
        let rate = (s.position - s.start_position.min(s.position)) as f64 / secs.max(1e-9);
        let mut line = format!("{}: {}", self.label, self.count(s.position));
        if let Some(t) = self.total {
            line.push_str(&format!("/{}", self.count(t)));
        }
        if self.is_bytes() {
            line.push_str(&format!(" ({}/s", HumanBytes(rate as u64)));
        } else {
            line.push_str(&format!(
                " {} ({}",
                self.unit,
                format_rate(rate, &self.unit)
            ));
        }
        if let Some(t) = self.total
            && rate > 0.0
            && s.position < t
        {
            let eta = (t - s.position) as f64 / rate;
            line.push_str(&format!(", ETA {}", format_duration(eta)));
        }
        line.push_str(&format!(", {} elapsed)", format_duration(secs)));
        if !s.message.is_empty() {
            line.push(' ');
            line.push_str(&s.message);
        }
        line
    }
}

impl Progress {
    /// The unit `bytes` is shown as `1.50 MiB`.
    fn is_bytes(&self) -> bool {
        self.unit == BYTES
    }

    fn count(&self, n: u64) -> String {
        if self.is_bytes() {
            HumanBytes(n).to_string()
        } else {
            n.to_string()
        }
    }
}

/// The unit that is shown in KiB, MiB, GiB (downloads).
pub const BYTES: &str = "bytes";

fn lock(s: &Mutex<LineState>) -> std::sync::MutexGuard<'_, LineState> {
    // a panic while printing leaves the counts usable
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn bar(label: &str, total: Option<u64>, unit: &str) -> ProgressBar {
    let (pos, len, rate) = if unit == BYTES {
        ("{bytes}", "{total_bytes}", "{bytes_per_sec}")
    } else {
        ("{pos}", "{len}", "{rate}")
    };
    // the rate says the unit ("12.3 images/s"); bytes are counted as "1.50 MiB"
    // the label is text (a file name), not a template
    let label = label.replace('{', "{{").replace('}', "}}");
    let (bar, template) = match total {
        Some(t) => (
            ProgressBar::new(t),
            format!(
                "{label} {{elapsed_precise}} [{{bar:30}}] {pos}/{len} \
                 ({rate}, ETA {{eta}}) {{msg}}"
            ),
        ),
        None => (
            ProgressBar::no_length(),
            format!("{label} {{elapsed_precise}} {pos} ({rate}) {{msg}}"),
        ),
    };
    let rate_unit = unit.to_string();
    bar.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                move |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&format_rate(s.per_sec(), &rate_unit));
                },
            )
            .progress_chars("=> "),
    );
    bar
}

/// `12.3 images/s`, or `4.5 s/image` when slower than one a second.
pub fn format_rate(per_second: f64, unit: &str) -> String {
    if per_second >= 1.0 || per_second <= 0.0 {
        format!("{per_second:.1} {unit}/s")
    } else {
        format!("{:.1} s/{}", 1.0 / per_second, singular(unit))
    }
}

/// The singular of an English plural unit: `images` -> `image`, `batches` -> `batch`
/// (the plurals in `-es` after `ch`, `sh`, `ss` and `x`; not `-zes`, where `sizes` is more
/// common than `quizzes`); other words unchanged.
fn singular(unit: &str) -> &str {
    let sibilant_es = ["ches", "shes", "sses", "xes"];
    if sibilant_es.iter().any(|e| unit.ends_with(e)) {
        &unit[..unit.len() - 2]
    } else {
        unit.strip_suffix('s').unwrap_or(unit)
    }
}

/// `42s`, `3m 05s`, `2h 07m`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(total: u64) -> Progress {
        Progress::new("scoring", total, "images", ProgressMode::Lines)
    }

    #[test]
    fn a_line_has_counts_rate_eta_and_message_and_no_carriage_return() {
        let p = lines(400);
        p.set_message("set mnist");
        let Kind::Lines(s) = &p.kind else {
            panic!("lines")
        };
        let mut st = lock(s);
        st.position = 100;
        let later = st.start + Duration::from_secs(10);
        let line = p.line(&st, later);
        assert_eq!(
            line,
            "scoring: 100/400 images (10.0 images/s, ETA 30s, 10s elapsed) set mnist"
        );
        st.position = 400;
        let line = p.line(&st, later);
        assert!(!line.contains("ETA") && !line.contains('\r'), "{line}");
    }

    #[test]
    fn a_resumed_task_rates_only_the_new_work() {
        let p = lines(1000).with_start(500);
        let Kind::Lines(s) = &p.kind else {
            panic!("lines")
        };
        let mut st = lock(s);
        st.position = 520;
        let line = p.line(&st, st.start + Duration::from_secs(10));
        assert!(line.contains("(2.0 images/s, ETA 4m 00s"), "{line}");
    }

    #[test]
    fn unknown_totals_and_hidden_tasks() {
        let p = Progress::new("inception", 0, "images", ProgressMode::Lines);
        p.inc(50);
        assert_eq!(p.position(), 50);
        let Kind::Lines(s) = &p.kind else {
            panic!("lines")
        };
        let st = lock(s);
        let line = p.line(&st, st.start + Duration::from_secs(5));
        assert_eq!(line, "inception: 50 images (10.0 images/s, 5s elapsed)");
        drop(st);
        let h = Progress::hidden();
        h.inc(3);
        h.println("never shown");
        assert!(!h.is_shown());
        assert_eq!(h.position(), 3, "a hidden task still counts");
    }

    #[test]
    fn the_interval_limits_lines_but_not_the_first_or_last() {
        let p = lines(10).with_line_interval(Duration::from_secs(3600));
        let Kind::Lines(s) = &p.kind else {
            panic!("lines")
        };
        p.inc(1);
        let first = lock(s).last;
        assert!(first.is_some());
        p.inc(1);
        assert_eq!(lock(s).last, first, "a second line inside the interval");
        p.inc(8);
        let done = lock(s).last;
        assert!(done > first, "the last unit is always shown");
        p.finish();
        assert_eq!(lock(s).last, done, "finish repeats no line");
    }

    #[test]
    fn bytes_read_as_kib_and_mib() {
        let p = Progress::new("mnist.gz", 4 << 20, BYTES, ProgressMode::Lines);
        let Kind::Lines(s) = &p.kind else {
            panic!("lines")
        };
        let mut st = lock(s);
        st.position = 1 << 20;
        let line = p.line(&st, st.start + Duration::from_secs(2));
        assert_eq!(
            line,
            "mnist.gz: 1.00 MiB/4.00 MiB (512.00 KiB/s, ETA 6s, 2s elapsed)"
        );
    }

    #[test]
    fn rates_and_durations_read_well() {
        assert_eq!(format_rate(12.34, "images"), "12.3 images/s");
        assert_eq!(format_rate(0.25, "steps"), "4.0 s/step");
        assert_eq!(format_rate(0.5, "batches"), "2.0 s/batch");
        assert_eq!(format_rate(0.5, "boxes"), "2.0 s/box");
        assert_eq!(format_rate(0.5, "classes"), "2.0 s/class");
        assert_eq!(format_rate(0.5, "sizes"), "2.0 s/size");
        assert_eq!(format_rate(0.5, "it"), "2.0 s/it");
        assert_eq!(format_rate(0.5, "points"), "2.0 s/point");
        assert_eq!(format_duration(42.4), "42s");
        assert_eq!(format_duration(185.0), "3m 05s");
        assert_eq!(format_duration(7620.0), "2h 07m");
    }
}
