//! Errors the device reports to its transport.

use thiserror::Error;

/// An error of the device model, reported to the transport (the guest's own
/// malformed requests are answered in the queue, not here).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The options given to [`Block::new`](crate::Block::new) are invalid.
    #[error("invalid virtio-blk options: {0}")]
    InvalidOptions(&'static str),
    /// The driver did not accept `VIRTIO_F_VERSION_1` (legacy drivers are
    /// not supported).
    #[error("driver features {features:#x} lack VIRTIO_F_VERSION_1")]
    LegacyDriver {
        /// The features the driver accepted.
        features: u64,
    },
    /// The driver accepted features the device did not offer.
    #[error("driver accepted features {bits:#x} the device did not offer")]
    FeaturesNotOffered {
        /// The offending bits.
        bits: u64,
    },
    /// Activation before feature negotiation completed.
    #[error("device activated before features were negotiated")]
    NotNegotiated,
    /// Activation of a device that is already active.
    #[error("device is already active")]
    AlreadyActive,
    /// No queue is ready at activation.
    #[error("no queue is ready")]
    NoQueues,
    /// More queues than the device has, or several without `VIRTIO_BLK_F_MQ`.
    #[error("{given} queues given, the device serves at most {max}")]
    TooManyQueues {
        /// Queues given.
        given: usize,
        /// Queues allowed.
        max: u16,
    },
    /// A ready queue whose rings are not inside guest memory or misaligned.
    #[error("queue {index} is not valid in guest memory")]
    QueueInvalid {
        /// The queue index.
        index: u16,
    },
    /// A queue larger than the device's maximum.
    #[error("queue {index} has {size} entries, more than the maximum {max}")]
    QueueTooLarge {
        /// The queue index.
        index: u16,
        /// Its size.
        size: u16,
        /// The maximum.
        max: u16,
    },
    /// A notification for a queue that does not exist or is not active.
    #[error("queue {index} is not active")]
    NotActive {
        /// The queue index.
        index: u16,
    },
    /// The queue itself is broken (rings unreadable, available index more
    /// than a queue ahead): the transport should set DEVICE_NEEDS_RESET.
    #[error("queue {index} is broken")]
    Queue {
        /// The queue index.
        index: u16,
        /// What virtio-queue reported.
        #[source]
        source: virtio_queue::Error,
    },
    /// The available index says there is work but no chain can be read.
    #[error("queue {index} announces chains that cannot be read")]
    QueueStuck {
        /// The queue index.
        index: u16,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
