//! The daemon's side of the work queue: each settled study published as one [`Job`], the
//! journal told only after the broker's confirm (see [`crate::watch::Dispatch`]).

use super::{Broker, Job, QUEUE};
use crate::pipeline::Engine;
use crate::watch::{Dispatch, DispatchError, SettledStudy};

/// Publishes settled studies to [`QUEUE`], connecting (again) when needed.
pub struct Publisher {
    url: String,
    broker: Option<Broker>,
}

impl Publisher {
    /// A publisher for the broker at `url` (connected on first use).
    pub fn new(url: &str) -> Publisher {
        Publisher {
            url: url.to_string(),
            broker: None,
        }
    }
}

impl Dispatch for Publisher {
    fn dispatch(&mut self, engine: &Engine, study: &SettledStudy<'_>) -> Result<(), DispatchError> {
        if self.broker.as_ref().is_some_and(|b| !b.connected()) {
            tracing::warn!("the broker connection was lost: connecting again");
            self.broker = None;
        }
        let broker = match self.broker.take() {
            Some(broker) => broker,
            None => Broker::connect(&self.url).map_err(|e| DispatchError {
                source: Box::new(e),
            })?,
        };
        let job = Job::new(engine, study);
        match broker.publish(QUEUE, &job.to_bytes(), &job.job_id, None) {
            Ok(()) => {
                tracing::info!(job = %job.job_id, "job confirmed by the broker");
                self.broker = Some(broker);
                Ok(())
            }
            // the connection is not trusted after a failed publish: a new one next time
            Err(error) => Err(DispatchError {
                source: Box::new(error),
            }),
        }
    }
}
