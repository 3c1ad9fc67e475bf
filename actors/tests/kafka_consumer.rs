//! The consumer side of the Kafka layer on a real broker (tansu, started by
//! `common::broker`, or the broker in `CANDELA_KAFKA_BROKERS`): the shared bus
//! contract of `backends::bus` (records read back exactly, offsets committed
//! by one group member are where the next one resumes, uncommitted batches
//! come again, members split partitions, undecodable messages land on the
//! dead-letter topic with their reason), the same cases the in-process bus
//! passes (`embedded.rs`).
//!
//! The `placed` module runs the same cases on members given their partitions
//! by a `Placement` (`assign`, the way the node places its fixed consumers),
//! and checks failover between placed members: a member's share grows when
//! another member is gone, and resumes from that member's committed offsets.

mod backends;
mod common;

use backends::kafka::kafka;

bus_contract_tests!(kafka);

mod placed {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use crate::backends::bus::{records, take};
    use crate::backends::kafka::kafka_placed;
    use crate::bus_contract_tests;
    use candela_actors::consumer::OpenStream;
    use candela_actors::kafka::{KafkaPublisher, KafkaStreams, Share};
    use candela_actors::ports::{MessageStream, RawMessage, RecordBus};

    bus_contract_tests!(@cases kafka_placed;
        records_published_are_read_back_exactly,
        a_new_member_resumes_where_the_last_one_committed,
        a_batch_that_was_not_committed_is_delivered_again_to_the_next_member,
        undecodable_messages_land_on_the_dead_letter_topic_with_their_reason,
    );

    fn ids(messages: &[RawMessage]) -> BTreeSet<(i32, i64)> {
        messages.iter().map(|m| (m.partition, m.offset)).collect()
    }

    /// A placement whose member count the test sets.
    fn share_of(
        index: usize,
        count: Arc<AtomicUsize>,
    ) -> Arc<dyn candela_actors::kafka::Placement> {
        Arc::new(move || Share {
            index,
            count: count.load(Ordering::SeqCst),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placed_members_split_the_partitions_and_the_survivor_takes_over() {
        let config = crate::common::config();
        let bus = KafkaPublisher::new(&config).unwrap();
        let topic = crate::common::unique("placed");
        bus.ensure_topic(&topic, 4).await.unwrap();
        // Enough instruments that every partition gets records.
        let sent = records(&crate::common::instruments(24), 1_200, 1_000_000);
        RecordBus::publish(&bus, &topic, &sent).await.unwrap();
        let group = crate::common::unique("placed");
        let topics = vec![topic.clone()];

        // Two members, each with half of the partitions.
        let a_count = Arc::new(AtomicUsize::new(2));
        let a_streams = KafkaStreams::placed(config.clone(), share_of(0, Arc::clone(&a_count)));
        let b_streams =
            KafkaStreams::placed(config.clone(), share_of(1, Arc::new(AtomicUsize::new(2))));
        let mut a = a_streams.open(&group, &topics).await.unwrap();
        let mut b = b_streams.open(&group, &topics).await.unwrap();

        // A reads and commits everything of its share: partitions 0 and 2.
        let mut a_got = Vec::new();
        loop {
            let batch = a.next_batch(500, Duration::from_secs(2)).await.unwrap();
            if batch.is_empty() {
                break;
            }
            a.commit(&batch).await.unwrap();
            a_got.extend(batch);
        }
        assert_eq!(a.assignment(), vec![(topic.clone(), 0), (topic.clone(), 2)]);
        assert!(a_got.iter().all(|m| m.partition % 2 == 0));
        assert!(!a_got.is_empty());

        // B reads part of its share (partitions 1 and 3), commits a first
        // batch, then dies with a second batch uncommitted.
        let b_committed = take(&mut b, 100, 100, Duration::from_secs(60)).await;
        assert_eq!(b_committed.len(), 100);
        b.commit(&b_committed).await.unwrap();
        let b_uncommitted = take(&mut b, 100, 100, Duration::from_secs(60)).await;
        assert_eq!(b_uncommitted.len(), 100);
        assert!(b_committed
            .iter()
            .chain(&b_uncommitted)
            .all(|m| m.partition % 2 == 1));
        assert_eq!(b.assignment(), vec![(topic.clone(), 1), (topic.clone(), 3)]);
        drop(b);

        // A is now the only member: it takes partitions 1 and 3 from B's
        // committed offsets, so B's uncommitted batch comes again.
        a_count.store(1, Ordering::SeqCst);
        let rest = take(
            &mut a,
            sent.len() - a_got.len() - 100,
            1_000,
            Duration::from_secs(60),
        )
        .await;
        let extra = a.next_batch(100, Duration::from_secs(2)).await.unwrap();
        assert!(extra.is_empty(), "unexpected messages: {}", extra.len());
        assert_eq!(a.assignment().len(), 4);
        let rest_ids = ids(&rest);
        assert!(
            ids(&b_uncommitted).is_subset(&rest_ids),
            "B's uncommitted batch was lost"
        );
        assert!(
            ids(&b_committed).is_disjoint(&rest_ids),
            "B's committed batch came again"
        );
        assert!(ids(&a_got).is_disjoint(&rest_ids));
        let mut all = ids(&a_got);
        all.extend(ids(&b_committed));
        all.extend(rest_ids);
        assert_eq!(all.len(), sent.len(), "every record, once");
        a.commit(&rest).await.unwrap();

        // A member joins again: A gives partitions 1 and 3 back.
        a_count.store(2, Ordering::SeqCst);
        let nothing = a.next_batch(100, Duration::from_millis(500)).await.unwrap();
        assert!(nothing.is_empty());
        assert_eq!(a.assignment(), vec![(topic.clone(), 0), (topic.clone(), 2)]);
        a.close().await;
    }
}
