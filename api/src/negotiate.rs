//! Conditional and compressed answers of a JSON body: a strong `ETag` (a
//! hash of the body's bytes, one per content coding), `If-None-Match`
//! answered `304 Not Modified`, and gzip or brotli when the client's
//! `Accept-Encoding` asks for it.
//!
//! Compressed bodies are kept in a bounded memo by tag and coding, so many
//! clients polling the same series compress it once.
//!
//! What must never happen: a `304` for a body other than the one the client
//! holds (tags are 64-bit hashes of the exact bytes, the same on every node),
//! a coding the client did not accept, or unbounded memory.

use bytes::Bytes;
use poem::http::HeaderMap;

/// A content coding of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// As is.
    Identity,
    /// gzip.
    Gzip,
    /// brotli.
    Brotli,
}

impl Coding {
    /// The `Content-Encoding` value (none for identity).
    pub fn header(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Brotli => Some("br"),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Gzip => "-gzip",
            Coding::Brotli => "-br",
        }
    }
}

/// Bodies shorter than this are sent as they are: compressing them saves
/// less than it costs.
const MIN_COMPRESSED: usize = 1_024;

/// The coding to answer with, by the client's `Accept-Encoding`: the one
/// it weighs highest (`q`, 1 by default; `*` stands for the codings it does
/// not name), brotli before gzip on a tie; identity when it accepts
/// neither, or for a small body.
pub fn coding(headers: &HeaderMap, len: usize) -> Coding {
    if len < MIN_COMPRESSED {
        return Coding::Identity;
    }
    let (mut br, mut gzip, mut star) = (None::<f32>, None::<f32>, None::<f32>);
    for value in headers.get_all(poem::http::header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut fields = part.split(';');
            let name = fields.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = Some(1.0f32);
            for p in fields {
                let p = p.trim();
                if p.len() > 2 && p[..2].eq_ignore_ascii_case("q=") {
                    q = p[2..]
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q));
                }
            }
            // A weight that cannot be read: the part is ignored.
            let Some(q) = q else { continue };
            match name.as_str() {
                "br" => br = Some(q),
                "gzip" | "x-gzip" => gzip = Some(q),
                "*" => star = Some(q),
                _ => {}
            }
        }
    }
    let br = br.or(star).unwrap_or(0.0);
    let gzip = gzip.or(star).unwrap_or(0.0);
    if br > 0.0 && br >= gzip {
        Coding::Brotli
    } else if gzip > 0.0 {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// The tag of a body, as sent in a coding.
pub fn tag(hash: u64, coding: Coding) -> String {
    format!("\"{hash:016x}{}\"", coding.suffix())
}

/// The hash a body's tags are made of.
pub fn hash(body: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(body)
}

/// Whether `If-None-Match` names the body of `hash` (in any coding: the
/// content is the same).
pub fn not_modified(headers: &HeaderMap, hash: u64) -> bool {
    let plain = format!("{hash:016x}");
    headers
        .get_all(poem::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| {
            if t == "*" {
                return true;
            }
            let t = t.strip_prefix("W/").unwrap_or(t);
            let Some(t) = t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
                return false;
            };
            let t = t
                .strip_suffix("-gzip")
                .or_else(|| t.strip_suffix("-br"))
                .unwrap_or(t);
            t == plain
        })
}

/// Compressed bodies by hash and coding, bounded by their bytes; at most
/// one compression per core at a time (beyond, the body is sent as it is:
/// compressing is a favour, never a queue).
pub struct Compressed {
    cache: quick_cache::sync::Cache<(u64, Coding), Bytes, BytesWeight>,
    workers: std::sync::Arc<tokio::sync::Semaphore>,
}

#[derive(Clone)]
struct BytesWeight;

impl quick_cache::Weighter<(u64, Coding), Bytes> for BytesWeight {
    fn weight(&self, _key: &(u64, Coding), body: &Bytes) -> u64 {
        body.len() as u64 + 64
    }
}

impl std::fmt::Debug for Compressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressed")
            .field("entries", &self.cache.len())
            .finish()
    }
}

impl Compressed {
    /// A memo of about `bytes` of compressed bodies.
    pub fn new(bytes: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            cache: quick_cache::sync::Cache::with_weighter(
                (bytes / 8_000).max(16) as usize,
                bytes.max(1),
                BytesWeight,
            ),
            workers: std::sync::Arc::new(tokio::sync::Semaphore::new(cores)),
        }
    }

    /// `body` in `coding` (compressed once per hash and coding, on a
    /// blocking thread), or as it is when every worker is busy.
    pub async fn get(&self, body: &Bytes, hash: u64, coding: Coding) -> (Bytes, Coding) {
        if coding == Coding::Identity {
            return (body.clone(), coding);
        }
        if let Some(done) = self.cache.get(&(hash, coding)) {
            return (done, coding);
        }
        let Ok(permit) = std::sync::Arc::clone(&self.workers).try_acquire_owned() else {
            return (body.clone(), Coding::Identity);
        };
        let input = body.clone();
        let done = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            compress(&input, coding)
        })
        .await;
        match done {
            Ok(done) => {
                let done = Bytes::from(done);
                self.cache.insert((hash, coding), done.clone());
                (done, coding)
            }
            Err(_) => (body.clone(), Coding::Identity),
        }
    }
}

/// Compresses with a fast setting (answers are compressed on the request
/// path).
pub fn compress(body: &[u8], coding: Coding) -> Vec<u8> {
    use std::io::Write;
    match coding {
        Coding::Identity => body.to_vec(),
        Coding::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::new(3),
            );
            let _ = enc.write_all(body);
            enc.finish().unwrap_or_default()
        }
        Coding::Brotli => {
            let mut out = Vec::with_capacity(body.len() / 4);
            let params = brotli::enc::BrotliEncoderParams {
                // Quicker for a large body.
                quality: if body.len() > 1 << 20 { 2 } else { 4 },
                lgwin: 20,
                ..Default::default()
            };
            let mut input = body;
            let _ = brotli::BrotliCompress(&mut input, &mut out, &params);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn the_coding_follows_accept_encoding() {
        let big = 10_000;
        assert_eq!(coding(&HeaderMap::new(), big), Coding::Identity);
        assert_eq!(
            coding(&headers("accept-encoding", "gzip, deflate, br"), big),
            Coding::Brotli
        );
        assert_eq!(
            coding(&headers("accept-encoding", "gzip, br;q=0"), big),
            Coding::Gzip
        );
        assert_eq!(
            coding(&headers("accept-encoding", "identity"), big),
            Coding::Identity
        );
        assert_eq!(
            coding(&headers("accept-encoding", "*"), big),
            Coding::Brotli
        );
        assert_eq!(
            coding(&headers("accept-encoding", "gzip;q=0, deflate"), big),
            Coding::Identity
        );
        assert_eq!(
            coding(&headers("accept-encoding", "gzip"), 100),
            Coding::Identity,
            "a small body is sent as is"
        );
        // `*` covers only what is not named; weights decide.
        assert_eq!(
            coding(&headers("accept-encoding", "gzip;q=0, *"), big),
            Coding::Brotli
        );
        assert_eq!(
            coding(&headers("accept-encoding", "gzip;q=0, br;q=0, *"), big),
            Coding::Identity
        );
        assert_eq!(
            coding(&headers("accept-encoding", "br;q=0.1, gzip;q=1"), big),
            Coding::Gzip
        );
        assert_eq!(
            coding(&headers("accept-encoding", "br;Q=0, gzip"), big),
            Coding::Gzip
        );
        assert_eq!(
            coding(
                &headers("accept-encoding", "br;q=nonsense, gzip;q=0.5"),
                big
            ),
            Coding::Gzip
        );
    }

    #[test]
    fn if_none_match_names_the_body_in_any_coding() {
        let h = hash(b"{}");
        let t = tag(h, Coding::Gzip);
        let mut m = HeaderMap::new();
        m.insert("if-none-match", HeaderValue::from_str(&t).unwrap());
        assert!(not_modified(&m, h));
        assert!(!not_modified(&m, h ^ 1));
        let mut m = HeaderMap::new();
        m.insert(
            "if-none-match",
            HeaderValue::from_str(&format!("\"x\", W/{}", tag(h, Coding::Identity))).unwrap(),
        );
        assert!(not_modified(&m, h));
        assert!(not_modified(&headers("if-none-match", "*"), h));
        assert!(!not_modified(&headers("if-none-match", "garbage"), h));
        assert!(!not_modified(&HeaderMap::new(), h));
    }

    #[tokio::test]
    async fn compressed_bodies_decompress_to_the_body() {
        use std::io::Read;
        let body: Vec<u8> = (0..5_000)
            .flat_map(|k| format!("{{\"time\":{k},\"open\":\"1.5\"}},").into_bytes())
            .collect();
        let gz = compress(&body, Coding::Gzip);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
        assert!(gz.len() * 4 < body.len());
        let br = compress(&body, Coding::Brotli);
        let mut back = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut back).unwrap();
        assert_eq!(back, body);
        let memo = Compressed::new(1 << 20);
        let body = Bytes::from(body);
        let h = hash(&body);
        let (first, coding) = memo.get(&body, h, Coding::Gzip).await;
        assert_eq!(coding, Coding::Gzip);
        assert_eq!(
            memo.get(&body, h, Coding::Gzip).await,
            (first, Coding::Gzip)
        );
        assert_eq!(
            memo.get(&body, h, Coding::Identity).await,
            (body, Coding::Identity)
        );
    }
}
