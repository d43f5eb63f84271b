//! Progress of long work in the library (a run's studies, an audit's images, SAE training),
//! told to whoever listens: the command line draws a bar; the daemon, the plugin and tests
//! listen with [`NoProgress`]. The library itself draws nothing.

/// Told as work goes on; stages follow one another.
pub trait Progress {
    /// A stage of `total` steps begins.
    fn stage(&self, name: &str, total: usize);
    /// One step of the stage is done; `message` says what (a path, a UID, a loss).
    fn step(&self, message: &str);
    /// The work is over.
    fn finish(&self);
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: usize) {}
    fn step(&self, _message: &str) {}
    fn finish(&self) {}
}
