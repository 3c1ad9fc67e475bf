//! The live stream's payload as the OpenAPI document describes it: a
//! `text/event-stream` whose every event is an object with `event` (its
//! type: `partial`, `bar` or `correction`), `id` (send it back as
//! `Last-Event-ID` to resume) and `data` (one bar, a [`BarDto`] as JSON).
//! poem-openapi's own `EventStream` documents the stream as a JSON array of
//! its items, which is not what a client reads; this wrapper keeps its
//! encoding and says what is sent.
//!
//! What must never happen: an event the schema does not describe (a type
//! outside [`EVENT_TYPES`], an id outside [`EVENT_ID_PATTERN`]).
//!
//! [`BarDto`]: crate::model::BarDto

use poem::{IntoResponse, Response};
use poem_openapi::payload::{EventStream, Payload};
use poem_openapi::registry::{
    MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::ApiResponse;

use crate::stream::Events;

/// The types of the stream's events.
pub const EVENT_TYPES: [&str; 3] = ["partial", "bar", "correction"];

/// The pattern of the stream's event ids (`VERSION-TIME`).
pub const EVENT_ID_PATTERN: &str = r"^[0-9]{1,18}-[0-9]{1,10}$";

/// The bars of the live stream as server-sent events.
pub struct BarEvents(pub EventStream<Events>);

fn string(description: &'static str) -> MetaSchema {
    MetaSchema {
        description: Some(description),
        ..MetaSchema::new("string")
    }
}

impl Payload for BarEvents {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn schema_ref() -> MetaSchemaRef {
        let event = MetaSchema {
            enum_items: EVENT_TYPES.iter().map(|t| (*t).into()).collect(),
            ..string(
                "`partial` (the interval in progress, whenever it changes), `bar` (an \
                 interval that closed, sent closed once) or `correction` (a closed interval \
                 already sent, changed: replace it)",
            )
        };
        let id = MetaSchema {
            pattern: Some(EVENT_ID_PATTERN.to_owned()),
            ..string("The event id: send it back as `Last-Event-ID` to resume after it.")
        };
        let data = string(
            "The bar, as JSON: the fields of BarDto (time, open, high, low, close, \
             volume_base, volume_quote, trades, source, closed).",
        );
        let retry = MetaSchema {
            minimum: Some(0.0),
            ..MetaSchema::new_with_format("integer", "int64")
        };
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            title: Some("BarEvent".to_owned()),
            description: Some("One server-sent event of the live stream."),
            required: vec!["event", "id", "data"],
            properties: vec![
                ("event", MetaSchemaRef::Inline(Box::new(event))),
                ("id", MetaSchemaRef::Inline(Box::new(id))),
                ("data", MetaSchemaRef::Inline(Box::new(data))),
                ("retry", MetaSchemaRef::Inline(Box::new(retry))),
            ],
            ..MetaSchema::new("object")
        }))
    }

    fn register(registry: &mut Registry) {
        <crate::model::BarDto as poem_openapi::types::Type>::register(registry);
    }
}

impl IntoResponse for BarEvents {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl ApiResponse for BarEvents {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The live stream",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }
}
