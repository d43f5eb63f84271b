//! The library's [`Progress`] drawn as a bar on standard error when it is a terminal (hidden
//! otherwise, so logs and pipes stay clean).

use std::io::IsTerminal;

use crate::progress::Progress;

/// A progress bar: `{prefix}` is the stage, `{msg}` the latest step's message.
pub(crate) struct Bar(indicatif::ProgressBar);

impl Bar {
    /// A bar counting `unit` ("images", "studies", "steps").
    pub(crate) fn new(unit: &str) -> Bar {
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} {{prefix}} {{pos}}/{{len}} {unit} [{{elapsed}}, {{eta}} left] {{wide_msg}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Bar(bar)
    }
}

impl Progress for Bar {
    fn stage(&self, name: &str, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(0);
        self.0.set_prefix(name.to_string());
    }
    fn step(&self, message: &str) {
        self.0
            .set_message(crate::logging::redact(message).into_owned());
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
