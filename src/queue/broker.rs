//! The AMQP 0-9-1 connection (lapin, driven to completion on the calling thread): the
//! queues' declaration, publishing with confirms, consuming one job at a time, and the dead
//! jobs as `dicom-xai status --broker` lists them.

use std::sync::mpsc::{Receiver, Sender};

use futures_lite::future::block_on;
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use snafu::{ResultExt, Snafu};

use super::{DEAD_QUEUE, DELIVERY_LIMIT, ERROR_HEADER, QUEUE};

/// Why the broker could not be used.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum BrokerError {
    /// The URL is not an AMQP URL.
    #[snafu(display("{url}: not a broker URL (amqp://HOST:PORT/VHOST): {message}"))]
    Url {
        /// The URL, without its credentials.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// No connection (the broker is down or refuses us).
    #[snafu(display("broker {url}: cannot connect: {source}"))]
    Connect {
        /// The URL, without its credentials.
        url: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// A queue could not be declared (another declaration with other arguments, rights).
    #[snafu(display("broker: cannot declare {queue}: {source}"))]
    Declare {
        /// The queue.
        queue: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// A channel operation failed (the connection was lost).
    #[snafu(display("broker: {what}: {source}"))]
    Channel {
        /// The operation.
        what: &'static str,
        /// lapin's error.
        source: lapin::Error,
    },
    /// The broker refused the message or could not route it.
    #[snafu(display("broker: {queue} did not take the message ({outcome})"))]
    NotConfirmed {
        /// The queue.
        queue: String,
        /// nack, or returned.
        outcome: &'static str,
    },
}

/// One open connection with one channel in confirm mode, the queues declared.
pub struct Broker {
    connection: Connection,
    channel: Channel,
}

/// What the consumer hands over.
#[derive(Debug)]
pub enum ConsumerEvent {
    /// A job.
    Delivery(Box<Delivery>),
    /// The consumer or its connection ended: reconnect.
    Lost(String),
}

/// A job on the dead-letter queue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadJob {
    /// The job id (the message id).
    pub job_id: Option<String>,
    /// StudyInstanceUID, when the body is a job.
    pub study_instance_uid: Option<String>,
    /// Why it died: the worker's last error, else what the broker says (`x-death`).
    pub error: String,
}

/// The URL without credentials, for messages and logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn long(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

/// The work queue's arguments: quorum, delivery limit, dead-lettered to [`DEAD_QUEUE`].
fn queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(ShortString::from("x-queue-type"), long("quorum"));
    arguments.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongInt(DELIVERY_LIMIT as i32),
    );
    arguments.insert(ShortString::from("x-dead-letter-exchange"), long(""));
    arguments.insert(
        ShortString::from("x-dead-letter-routing-key"),
        long(DEAD_QUEUE),
    );
    arguments
}

fn dead_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(ShortString::from("x-queue-type"), long("quorum"));
    arguments
}

/// Declares both queues (idempotent with the same arguments); their ready message counts.
fn declare(channel: &Channel) -> Result<(u32, u32), BrokerError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let jobs = block_on(channel.queue_declare(QUEUE, durable, queue_arguments()))
        .context(DeclareSnafu { queue: QUEUE })?;
    let dead = block_on(channel.queue_declare(DEAD_QUEUE, durable, dead_queue_arguments()))
        .context(DeclareSnafu { queue: DEAD_QUEUE })?;
    Ok((jobs.message_count(), dead.message_count()))
}

/// An integer header of a message, whatever integer type the broker chose.
fn integer_header(properties: &BasicProperties, name: &str) -> Option<i64> {
    let value = properties.headers().as_ref()?.inner().get(name)?;
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

fn text_header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_string()),
        _ => None,
    }
}

/// How many times the broker delivered this job before (`x-delivery-count` of quorum
/// queues; 0 on the first delivery).
pub fn earlier_deliveries(delivery: &Delivery) -> u32 {
    integer_header(&delivery.properties, "x-delivery-count")
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

impl Broker {
    /// Connects, declares both queues and turns publisher confirms on.
    pub fn connect(url: &str) -> Result<Broker, BrokerError> {
        let shown = redacted(url);
        if !url.starts_with("amqp://") {
            return UrlSnafu {
                url: shown,
                message: "only amqp:// is supported",
            }
            .fail();
        }
        let connection = block_on(Connection::connect(url, ConnectionProperties::default()))
            .context(ConnectSnafu { url: shown })?;
        let channel = block_on(connection.create_channel()).context(ChannelSnafu {
            what: "open a channel",
        })?;
        declare(&channel)?;
        block_on(channel.confirm_select(ConfirmSelectOptions::default())).context(
            ChannelSnafu {
                what: "turn publisher confirms on",
            },
        )?;
        Ok(Broker {
            connection,
            channel,
        })
    }

    /// Jobs ready on [`QUEUE`] (waiting for a worker; not those in a worker's hands) and
    /// jobs on [`DEAD_QUEUE`].
    pub fn counts(&self) -> Result<(u32, u32), BrokerError> {
        declare(&self.channel)
    }

    /// Whether the connection and its channel are still up.
    pub fn connected(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// Publishes a persistent message to `queue` and waits for the broker's confirm.
    pub fn publish(
        &self,
        queue: &str,
        body: &[u8],
        message_id: &str,
        error: Option<&str>,
    ) -> Result<(), BrokerError> {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(message_id));
        if let Some(error) = error {
            let mut headers = FieldTable::default();
            headers.insert(ShortString::from(ERROR_HEADER), long(error));
            properties = properties.with_headers(headers);
        }
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = block_on(
            self.channel
                .basic_publish("", queue, options, body, properties),
        )
        .context(ChannelSnafu { what: "publish" })?;
        match block_on(confirm).context(ChannelSnafu {
            what: "await the confirm",
        })? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => NotConfirmedSnafu {
                queue,
                outcome: "returned",
            }
            .fail(),
            Confirmation::Nack(_) | Confirmation::NotRequested => NotConfirmedSnafu {
                queue,
                outcome: "nack",
            }
            .fail(),
        }
    }

    /// Consumes [`QUEUE`] with `prefetch` unacknowledged jobs at most; the deliveries
    /// arrive on the receiver.
    pub fn consume(
        &self,
        tag: &str,
        prefetch: u16,
    ) -> Result<Receiver<ConsumerEvent>, BrokerError> {
        block_on(self.channel.basic_qos(prefetch, BasicQosOptions::default())).context(
            ChannelSnafu {
                what: "set the prefetch",
            },
        )?;
        let consumer = block_on(self.channel.basic_consume(
            QUEUE,
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .context(ChannelSnafu { what: "consume" })?;
        let (sender, receiver) = std::sync::mpsc::channel();
        consumer.set_delegate(move |delivery: DeliveryResult| {
            let sender: Sender<ConsumerEvent> = sender.clone();
            async move {
                let event = match delivery {
                    Ok(Some(delivery)) => ConsumerEvent::Delivery(Box::new(delivery)),
                    Ok(None) => ConsumerEvent::Lost("the broker cancelled the consumer".into()),
                    Err(error) => ConsumerEvent::Lost(error.to_string()),
                };
                let _ = sender.send(event);
            }
        });
        Ok(receiver)
    }

    /// The jobs on [`DEAD_QUEUE`], left there: read on a channel of their own that is then
    /// closed, which returns them to the queue.
    pub fn dead_jobs(&self) -> Result<Vec<DeadJob>, BrokerError> {
        let channel = block_on(self.connection.create_channel()).context(ChannelSnafu {
            what: "open a channel",
        })?;
        let mut dead = Vec::new();
        loop {
            let got = block_on(channel.basic_get(DEAD_QUEUE, BasicGetOptions::default())).context(
                ChannelSnafu {
                    what: "read the dead-letter queue",
                },
            )?;
            let Some(message) = got else { break };
            let delivery = &message.delivery;
            let job = super::Job::from_bytes(&delivery.data).ok();
            let error = text_header(&delivery.properties, ERROR_HEADER).unwrap_or_else(|| {
                format!(
                    "dead-lettered by the broker after {} deliveries (x-delivery-limit {DELIVERY_LIMIT})",
                    integer_header(&delivery.properties, "x-delivery-count").unwrap_or(0)
                )
            });
            dead.push(DeadJob {
                job_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_string())
                    .or_else(|| job.as_ref().map(|j| j.job_id.clone())),
                study_instance_uid: job.map(|j| j.study_instance_uid),
                error,
            });
            if message.message_count == 0 {
                break;
            }
        }
        block_on(channel.close(200, "dead jobs listed")).context(ChannelSnafu {
            what: "close the listing channel",
        })?;
        Ok(dead)
    }

    /// Closes the connection (unacknowledged jobs return to the queue).
    pub fn close(self) {
        let _ = block_on(self.connection.close(200, "bye"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_messages_and_only_amqp_urls_are_taken() {
        assert_eq!(
            redacted("amqp://user:secret@broker:5672/%2f"),
            "amqp://broker:5672/%2f"
        );
        assert_eq!(
            redacted("amqp://broker:5672/site"),
            "amqp://broker:5672/site"
        );
        let refused = Broker::connect("amqps://user:secret@broker:5671/%2f")
            .err()
            .expect("amqps is refused");
        let message = refused.to_string();
        assert!(message.contains("only amqp://"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}
