//! The consumer side of the Kafka layer on a real broker (tansu, started by
//! `common::broker`, or the broker in `CANDELA_KAFKA_BROKERS`): the shared bus
//! contract of `backends::bus` (records read back exactly, offsets committed
//! by one group member are where the next one resumes, uncommitted batches
//! come again, members split partitions, undecodable messages land on the
//! dead-letter topic with their reason), the same cases the in-process bus
//! passes (`embedded.rs`).

mod backends;
mod common;

use backends::kafka::kafka;

bus_contract_tests!(kafka);
