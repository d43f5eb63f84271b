//! The work queue (docs/design.md section 14): a site that outgrows one daemon adds workers
//! on other machines, fed through RabbitMQ.
//!
//! ```text
//!  watch --broker URL                    RabbitMQ                      worker (one per GPU)
//!  settled study -> Job ----publish----> dicom-xai.studies (quorum,  --> prefetch 1: read the
//!  journal: published   <---confirm----   durable, delivery limit)      study, Engine, report
//!  only after the confirm                       |                       (job_id), fsync, ack
//!                                               v  (failed DELIVERY_LIMIT times)
//!                                        dicom-xai.studies.dead  <-- the job and its error
//! ```
//!
//! - [`job`]: the message: study, files, the deterministic job id.
//! - [`broker`]: the AMQP connection, the queues' declaration, confirmed publishing, dead
//!   jobs as `status` lists them.
//! - [`publisher`]: the daemon's side ([`crate::watch::Dispatch`]).
//! - [`worker`]: `dicom-xai worker`: the consuming loop, reconnections, SIGTERM.
//!
//! A job is idempotent: the outputs' UIDs are deterministic, so a redelivered job rewrites
//! the same files, and a worker that finds the job's id in the study's report.json
//! acknowledges it without work.

pub mod broker;
pub mod job;
pub mod publisher;
pub mod worker;

pub use broker::{Broker, BrokerError, DeadJob};
pub use job::Job;
pub use publisher::Publisher;
pub use worker::{WorkerError, WorkerOptions, run_worker};

/// The durable quorum queue of study jobs.
pub const QUEUE: &str = "dicom-xai.studies";

/// Where a job goes after failing [`DELIVERY_LIMIT`] times, with its error.
pub const DEAD_QUEUE: &str = "dicom-xai.studies.dead";

/// How many times a job is tried before it is dead-lettered; also the queue's
/// `x-delivery-limit`, which catches a job that kills its workers. Part of the queue's
/// declaration: every watcher and worker of a site must agree on it.
pub const DELIVERY_LIMIT: u32 = 3;

/// The message header that carries a dead job's error.
pub const ERROR_HEADER: &str = "x-dicom-xai-error";
