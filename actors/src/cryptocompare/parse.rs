//! Pure translation of CryptoCompare text into typed values: WebSocket frames
//! into [`Frame`]s and [`Tick`]s, history bodies into [`HistoBar`]s or a
//! typed [`ApiError`]. No I/O and no logging here; callers decide what a
//! failure means.
//!
//! Frames are parsed in one pass into a struct that borrows from the text,
//! so a trade frame costs no string copies until it becomes a [`Tick`].

use std::borrow::Cow;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::error::{ApiError, ParseError};
use super::messages::{
    Frame, HistoBar, Notice, TradeFrame, Welcome, WireBar, WireEnvelope, WireFrame, WireHistoData,
};
use crate::domain::{Instrument, Side, Tick};

/// Flag bit: the taker sold.
pub const FLAG_SELL: u32 = 1;
/// Flag bit: the taker bought.
pub const FLAG_BUY: u32 = 2;
/// Flag bit: the side is unknown.
pub const FLAG_UNKNOWN: u32 = 4;
/// Flag bit: CryptoCompare reversed the exchange's pair (price and side are
/// already given for `FSYM`/`TSYM`).
pub const FLAG_REVERSED: u32 = 8;

/// The answer of a history request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoAnswer {
    /// `"Response":"Success"`: the bars, in the order sent.
    Bars(Vec<HistoBar>),
    /// `"Response":"Error"` (sent with HTTP 200).
    Error(ApiError),
}

/// Parses one server frame.
pub fn parse_frame(text: &str) -> Result<Frame<'_>, ParseError> {
    let w: WireFrame<'_> = serde_json::from_str(text)?;
    let frame = match w.TYPE.as_ref() {
        "0" => Frame::Trade(trade(w)?),
        "20" => Frame::Welcome(Welcome {
            server_name: w.SERVER_NAME,
            server_time_ms: w.SERVER_TIME_MS,
            client_id: w.CLIENT_ID,
            sockets_active: w.SOCKETS_ACTIVE,
            sockets_remaining: w.SOCKETS_REMAINING,
        }),
        "16" => Frame::SubscribeComplete {
            sub: w.SUB.ok_or(ParseError::MissingField("SUB"))?,
        },
        "17" => Frame::UnsubscribeComplete {
            sub: w.SUB.ok_or(ParseError::MissingField("SUB"))?,
        },
        "3" => Frame::LoadComplete,
        "999" => Frame::Heartbeat { time_ms: w.TIMEMS },
        code @ ("401" | "429" | "500") => Frame::Notice(Notice {
            code: code.parse().unwrap_or(500),
            message: w.MESSAGE.ok_or(ParseError::MissingField("MESSAGE"))?,
            parameter: w.PARAMETER,
            info: w.INFO,
        }),
        _ => Frame::Unknown { type_code: w.TYPE },
    };
    Ok(frame)
}

fn trade(w: WireFrame<'_>) -> Result<TradeFrame<'_>, ParseError> {
    let flags = match w.F {
        Some(raw) => unquote(raw)?
            .parse::<u32>()
            .map_err(|_| ParseError::InvalidNumber("F"))?,
        None => FLAG_UNKNOWN,
    };
    let ts = w.TS.ok_or(ParseError::MissingField("TS"))?;
    let ts_ns = w.TSNS.unwrap_or(0);
    if !(0..1_000_000_000).contains(&ts_ns) {
        return Err(ParseError::InvalidNumber("TSNS"));
    }
    Ok(TradeFrame {
        market: w.M.ok_or(ParseError::MissingField("M"))?,
        base: w.FSYM.ok_or(ParseError::MissingField("FSYM"))?,
        quote: w.TSYM.ok_or(ParseError::MissingField("TSYM"))?,
        flags,
        id: unquote(w.ID.ok_or(ParseError::MissingField("ID"))?)?,
        ts,
        ts_ns,
        price: decimal(w.P.ok_or(ParseError::MissingField("P"))?, "P")?,
        quantity: decimal(w.Q.ok_or(ParseError::MissingField("Q"))?, "Q")?,
    })
}

/// The text of a JSON string or number, without quotes.
fn unquote(raw: &RawValue) -> Result<Cow<'_, str>, ParseError> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') if !text.contains('\\') => Ok(Cow::Borrowed(&text[1..text.len() - 1])),
        Some(b'"') => Ok(Cow::Owned(serde_json::from_str::<String>(text)?)),
        Some(b'-' | b'0'..=b'9') => Ok(Cow::Borrowed(text)),
        _ => Err(ParseError::Unexpected("expected a string or a number")),
    }
}

/// A JSON number (or numeric string) as an exact decimal, digit for digit.
fn decimal(raw: &RawValue, field: &'static str) -> Result<Decimal, ParseError> {
    let text = unquote(raw).map_err(|_| ParseError::InvalidNumber(field))?;
    decimal_from_text(&text).ok_or(ParseError::InvalidNumber(field))
}

/// Decimal text (`37250.12`, `1e-5`) as an exact [`Decimal`].
pub fn decimal_from_text(text: &str) -> Option<Decimal> {
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text)
            .or_else(|_| Decimal::from_str(text))
            .ok()
    }
}

/// The aggressor side of a flag bitmask.
pub fn side_from_flags(flags: u32) -> Side {
    if flags & FLAG_UNKNOWN != 0 {
        Side::Unknown
    } else if flags & FLAG_BUY != 0 {
        Side::Buy
    } else if flags & FLAG_SELL != 0 {
        Side::Sell
    } else {
        Side::Unknown
    }
}

impl TradeFrame<'_> {
    /// Trade time, nanoseconds since the Unix epoch.
    pub fn time_ns(&self) -> i64 {
        self.ts
            .saturating_mul(1_000_000_000)
            .saturating_add(self.ts_ns)
    }

    /// The trade as a [`Tick`] received at `received_ns`.
    pub fn to_tick(&self, received_ns: i64) -> Tick {
        Tick {
            instrument: Instrument::new(
                self.market.as_ref(),
                self.base.as_ref(),
                self.quote.as_ref(),
            ),
            trade_id: self.id.clone().into_owned(),
            trade_time_ns: self.time_ns(),
            price: self.price,
            quantity: self.quantity,
            side: side_from_flags(self.flags),
            received_ns,
        }
    }
}

/// Parses a history body (`histominute`, `histohour`, `histoday`).
pub fn parse_histo_body(body: &str) -> Result<HistoAnswer, ParseError> {
    let env: WireEnvelope<'_> = serde_json::from_str(body)?;
    match env.response.as_deref() {
        Some("Success") => {
            let data = env.data.ok_or(ParseError::MissingField("Data"))?;
            let data: WireHistoData<'_> = serde_json::from_str(data.get())?;
            let bars = data.bars.iter().map(bar).collect::<Result<_, _>>()?;
            Ok(HistoAnswer::Bars(bars))
        }
        Some("Error") => Ok(HistoAnswer::Error(ApiError {
            code: env.type_code.unwrap_or(0),
            message: env.message.map(Cow::into_owned).unwrap_or_default(),
            param: env.param_with_error.map(Cow::into_owned),
        })),
        Some(_) => Err(ParseError::Unexpected(
            "Response is neither Success nor Error",
        )),
        None => Err(ParseError::MissingField("Response")),
    }
}

fn bar(w: &WireBar<'_>) -> Result<HistoBar, ParseError> {
    Ok(HistoBar {
        time: w.time,
        open: decimal(w.open, "open")?,
        high: decimal(w.high, "high")?,
        low: decimal(w.low, "low")?,
        close: decimal(w.close, "close")?,
        volume_from: decimal(w.volumefrom, "volumefrom")?,
        volume_to: decimal(w.volumeto, "volumeto")?,
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
