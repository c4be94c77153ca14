//! W3C Baggage (<https://www.w3.org/TR/baggage/>): application-defined
//! key/value pairs, with optional properties, carried in the `baggage` header
//! alongside the trace context.
//!
//! All `baggage` headers of a request form one list. Each list-member is
//! parsed with the specification's grammar; a member that does not match it is
//! skipped and the others are kept, which the specification allows ("it MAY
//! remove an offending `list-member` before propagating the rest"). The limits
//! the specification requires platforms to propagate (64 members, 8192 bytes)
//! are applied to whole members, on the way in and on the way out, because "it
//! MUST NOT propagate any partial `list-member`s".

use std::sync::{Arc, LazyLock};

use opentelemetry::{
    Context, Key, StringValue,
    baggage::{Baggage, BaggageExt},
    propagation::{Extractor, Injector, TextMapPropagator, text_map_propagator::FieldIter},
};

pub(super) const BAGGAGE_HEADER: &str = "baggage";

static FIELDS: LazyLock<[String; 1]> = LazyLock::new(|| [BAGGAGE_HEADER.to_owned()]);

/// Optional whitespace (RFC 7230 OWS): space and horizontal tab.
const OWS: [char; 2] = [' ', '\t'];

/// How much baggage is read from and written to a `baggage` header list.
///
/// The defaults are the amounts the specification requires a platform to
/// propagate: "64 `list-member`s or less" and "8192 bytes or less". Bytes are
/// those of the list-members as written, plus one comma between members.
/// Raising the limits has no effect past 64 members or 8192 bytes of keys,
/// values and properties, because opentelemetry's `Baggage` refuses entries
/// beyond those.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaggageLimits {
    /// Most list-members kept.
    pub max_members: usize,
    /// Most bytes of the list kept.
    pub max_bytes: usize,
}

impl Default for BaggageLimits {
    fn default() -> Self {
        Self {
            max_members: 64,
            max_bytes: 8192,
        }
    }
}

/// Propagates [`Baggage`] in the W3C `baggage` header.
#[derive(Clone, Debug, Default)]
pub struct BaggagePropagator {
    limits: BaggageLimits,
}

impl BaggagePropagator {
    /// A propagator with the default [`BaggageLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A propagator with other limits.
    pub fn with_limits(limits: BaggageLimits) -> Self {
        Self { limits }
    }

    /// The limits applied on extraction and injection.
    pub fn limits(&self) -> BaggageLimits {
        self.limits
    }
}

/// Parses all `baggage` header values, in order, as one list.
///
/// Invalid list-members are skipped. Members are then kept in order while
/// they fit in `limits`; one that would exceed them is dropped whole. When a
/// key appears more than once the last one wins (the specification leaves
/// deduplication to the implementation: "keeping the first entry, keeping the
/// last entry, or concatenating values together"). Values are percent-decoded;
/// properties are kept as written, without surrounding whitespace.
pub fn parse_baggage(values: &[&str], limits: BaggageLimits) -> Baggage {
    let mut baggage = Baggage::new();
    let mut members = 0_usize;
    let mut bytes = 0_usize;
    for raw in values.iter().flat_map(|value| value.split(',')) {
        if members >= limits.max_members {
            break;
        }
        let raw = raw.trim_matches(OWS);
        let Some(member) = parse_member(raw) else {
            if !raw.is_empty() {
                tracing::debug!("skipping invalid baggage list-member");
            }
            continue;
        };
        let size = usize::from(members > 0) + raw.len();
        if bytes + size > limits.max_bytes {
            // A later, shorter member may still fit.
            continue;
        }
        members += 1;
        bytes += size;
        // Shared strings: the baggage is copied into every service context and onto every
        // span (`telemetry::baggage`), and a copy of an `Arc<str>` is a reference count.
        baggage.insert_with_metadata(
            Key::from(Arc::<str>::from(member.key)),
            StringValue::from(Arc::<str>::from(member.value)),
            member.properties,
        );
    }
    baggage
}

/// Serialises `baggage` as a `baggage` header value, members sorted by key
/// (opentelemetry's `Baggage` has no order), or `None` when nothing is left to
/// send. Members are added while they fit in `limits`; one that would exceed
/// them is left out whole, as is one whose properties are not valid W3C
/// properties.
pub fn serialize_baggage(baggage: &Baggage, limits: BaggageLimits) -> Option<String> {
    let mut entries: Vec<_> = baggage.iter().collect();
    entries.sort_unstable_by(|(left, _), (right, _)| left.as_str().cmp(right.as_str()));

    let mut header = String::new();
    let mut members = 0_usize;
    for (key, (value, metadata)) in entries {
        if members >= limits.max_members {
            break;
        }
        let Some(member) = serialize_member(key.as_str(), value.as_str(), metadata.as_str()) else {
            tracing::debug!("not propagating baggage member with invalid properties");
            continue;
        };
        let size = usize::from(members > 0) + member.len();
        if header.len() + size > limits.max_bytes {
            continue;
        }
        if members > 0 {
            header.push(',');
        }
        header.push_str(&member);
        members += 1;
    }
    (members > 0).then_some(header)
}

/// One parsed list-member.
struct Member<'a> {
    key: &'a str,
    value: String,
    properties: String,
}

/// `list-member = key OWS "=" OWS value *( OWS ";" OWS property )`, given
/// without surrounding OWS.
fn parse_member(member: &str) -> Option<Member<'_>> {
    let mut parts = member.split(';');
    let (key, value) = parts.next()?.split_once('=')?;
    let key = key.trim_matches(OWS);
    let value = value.trim_matches(OWS);
    if !is_token(key) || !is_encoded_value(value) {
        return None;
    }
    Some(Member {
        key,
        value: percent_decode(value)?,
        properties: normalize_properties(parts)?,
    })
}

/// Validates `property = key OWS "=" OWS value / key OWS` for each part and
/// joins them with `;` without the optional whitespace; `None` if any part is
/// not a property (including an empty one, as in `k=v;`).
fn normalize_properties<'a>(properties: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut normalized = String::new();
    for property in properties {
        if !normalized.is_empty() {
            normalized.push(';');
        }
        let property = property.trim_matches(OWS);
        if let Some((key, value)) = property.split_once('=') {
            let key = key.trim_end_matches(OWS);
            let value = value.trim_start_matches(OWS);
            if !is_token(key) || !is_encoded_value(value) {
                return None;
            }
            normalized.push_str(key);
            normalized.push('=');
            normalized.push_str(value);
        } else {
            if !is_token(property) {
                return None;
            }
            normalized.push_str(property);
        }
    }
    Some(normalized)
}

fn serialize_member(key: &str, value: &str, metadata: &str) -> Option<String> {
    // `Baggage` only accepts token keys; checked again so that a future
    // relaxation there cannot put an invalid header on the wire.
    if !is_token(key) {
        return None;
    }
    let mut member = String::with_capacity(key.len() + 1 + value.len());
    member.push_str(key);
    member.push('=');
    percent_encode_into(value, &mut member);
    // opentelemetry documents metadata both with and without the leading `;`
    // (`;k1=v1;k2`), so accept both.
    let metadata = metadata.trim_matches(OWS);
    let metadata = metadata.strip_prefix(';').unwrap_or(metadata);
    if !metadata.is_empty() {
        member.push(';');
        member.push_str(&normalize_properties(metadata.split(';'))?);
    }
    Some(member)
}

/// `token` of RFC 7230, section 3.2.6: one or more `tchar`.
fn is_token(key: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// `baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`: visible
/// ASCII except DQUOTE, comma, semicolon and backslash.
fn is_baggage_octet(c: u8) -> bool {
    matches!(c, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

/// `*baggage-octet` in which every `%` starts a percent-encoded octet (the
/// spec requires `%` itself to be percent-encoded, so a bare one is an error).
fn is_encoded_value(value: &str) -> bool {
    value.bytes().all(is_baggage_octet) && percent_decode_bytes(value).is_some()
}

fn percent_decode_bytes(value: &str) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let high = bytes.next().and_then(hex_digit)?;
            let low = bytes.next().and_then(hex_digit)?;
            decoded.push((high << 4) | low);
        } else {
            decoded.push(byte);
        }
    }
    Some(decoded)
}

/// Percent-decodes a value; `None` for malformed percent-encoding. Octets that
/// are not UTF-8 become U+FFFD, as the specification requires ("MUST be
/// replaced with the replacement code point").
pub(crate) fn percent_decode(value: &str) -> Option<String> {
    percent_decode_bytes(value).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// RFC 3986: "uppercase and lowercase hexadecimal digits are equivalent".
fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes every UTF-8 byte of `value` outside `baggage-octet`, and
/// `%` as the spec requires. `=` is encoded too, which the spec allows ("MAY
/// be percent-encoded"), because parsers that split a member at every `=`
/// (such as opentelemetry's stock propagator) would otherwise cut the value.
fn percent_encode_into(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in value.bytes() {
        if is_baggage_octet(byte) && byte != b'%' && byte != b'=' {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

impl TextMapPropagator for BaggagePropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        if let Some(header) = serialize_baggage(cx.baggage(), self.limits) {
            injector.set(BAGGAGE_HEADER, header);
        }
    }

    /// Replaces the baggage of `cx` with the received one; `cx` is returned
    /// unchanged when the request has no valid baggage member.
    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(values) = extractor.get_all(BAGGAGE_HEADER) else {
            return cx.clone();
        };
        let baggage = parse_baggage(&values, self.limits);
        if baggage.is_empty() {
            cx.clone()
        } else {
            cx.with_baggage(baggage)
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::{HeaderExtractor, HeaderInjector};
    use http::{HeaderMap, HeaderValue};
    use opentelemetry::{KeyValue, baggage::KeyValueMetadata};

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                "baggage",
                HeaderValue::from_str(value).expect("test header values are valid"),
            );
        }
        map
    }

    fn extract(values: &[&str]) -> Context {
        let map = headers(values);
        BaggagePropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(&map))
    }

    /// The extracted baggage as sorted `(key, value, metadata)` triples.
    fn entries(baggage: &Baggage) -> Vec<(String, String, String)> {
        let mut entries: Vec<_> = baggage
            .iter()
            .map(|(key, (value, metadata))| {
                (
                    key.as_str().to_owned(),
                    value.as_str().to_owned(),
                    metadata.as_str().to_owned(),
                )
            })
            .collect();
        entries.sort();
        entries
    }

    fn entry(key: &str, value: &str, metadata: &str) -> (String, String, String) {
        (key.to_owned(), value.to_owned(), metadata.to_owned())
    }

    fn parse(values: &[&str]) -> Vec<(String, String, String)> {
        entries(&parse_baggage(values, BaggageLimits::default()))
    }

    fn inject(baggage: Baggage, propagator: &BaggagePropagator) -> Option<String> {
        let cx = Context::new().with_baggage(baggage);
        let mut map = HeaderMap::new();
        propagator.inject_context(&cx, &mut HeaderInjector(&mut map));
        map.get("baggage")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }

    fn baggage_of(pairs: &[(&str, &str)]) -> Baggage {
        pairs
            .iter()
            .map(|(key, value)| KeyValue::new(key.to_string(), value.to_string()))
            .collect()
    }

    /// 64 members `k00=`..`k63=` whose joined length is exactly 8192 bytes.
    fn sixty_four_members_of_8192_bytes() -> Vec<String> {
        (0..64)
            .map(|i| {
                let value_len = if i == 0 { 124 } else { 123 };
                format!("k{i:02}={}", "v".repeat(value_len))
            })
            .collect()
    }

    // extraction

    #[test]
    fn the_spec_example_with_properties_is_extracted() {
        assert_eq!(
            parse(&[
                "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue"
            ]),
            vec![
                entry("key1", "value1", "property1;property2"),
                entry("key2", "value2", ""),
                entry("key3", "value3", "propertyKey=propertyValue"),
            ]
        );
    }

    #[test]
    fn several_baggage_headers_form_one_list() {
        let cx = extract(&["userId=alice", "serverNode=DF%2028,isProduction=false"]);
        assert_eq!(
            entries(cx.baggage()),
            vec![
                entry("isProduction", "false", ""),
                entry("serverNode", "DF 28", ""),
                entry("userId", "alice", ""),
            ]
        );
    }

    #[test]
    fn percent_encoded_values_are_decoded() {
        assert_eq!(
            parse(&["userId=Am%C3%A9lie,serverNode=DF%2028,lower=%c3%a9"]),
            vec![
                entry("lower", "\u{e9}", ""),
                entry("serverNode", "DF 28", ""),
                entry("userId", "Am\u{e9}lie", ""),
            ]
        );
    }

    #[test]
    fn spaces_and_tabs_around_keys_values_and_separators_are_ignored() {
        assert_eq!(
            parse(&[
                "userId =   alice",
                "serverNode = DF%2028, isProduction = false",
                "\tk\t=\tv\t;\tp1\t;\tp2\t=\tx\t"
            ]),
            vec![
                entry("isProduction", "false", ""),
                entry("k", "v", "p1;p2=x"),
                entry("serverNode", "DF 28", ""),
                entry("userId", "alice", ""),
            ]
        );
    }

    #[test]
    fn a_value_may_contain_equals_signs() {
        assert_eq!(parse(&["k=a=b=="]), vec![entry("k", "a=b==", "")]);
    }

    #[test]
    fn an_empty_value_is_allowed() {
        assert_eq!(
            parse(&["k=,j= "]),
            vec![entry("j", "", ""), entry("k", "", "")]
        );
    }

    #[test]
    fn a_member_whose_key_is_not_a_token_is_skipped() {
        assert_eq!(
            parse(&["bad key=1,k(=2,=3,k\u{e9}=4,good=5"]),
            vec![entry("good", "5", "")]
        );
    }

    #[test]
    fn a_member_without_an_equals_sign_is_skipped() {
        assert_eq!(parse(&["novalue,good=1"]), vec![entry("good", "1", "")]);
    }

    #[test]
    fn a_member_with_a_character_outside_baggage_octet_is_skipped() {
        assert_eq!(
            parse(&["a=x y,b=\"q\",c=x\\y,d=\u{e9},good=1"]),
            vec![entry("good", "1", "")]
        );
    }

    #[test]
    fn a_member_with_malformed_percent_encoding_is_skipped() {
        assert_eq!(
            parse(&["a=%zz,b=%4,c=100%,good=%25"]),
            vec![entry("good", "%", "")]
        );
    }

    #[test]
    fn invalid_utf8_after_percent_decoding_is_replaced_by_the_replacement_character() {
        assert_eq!(
            parse(&["a=%FF,b=x%C3"]),
            vec![entry("a", "\u{FFFD}", ""), entry("b", "x\u{FFFD}", "")]
        );
    }

    #[test]
    fn a_member_with_an_invalid_property_is_skipped() {
        assert_eq!(
            parse(&["a=1;bad prop,b=2;,c=3;p=%zz,d=4;=x,good=5;p=%20"]),
            vec![entry("good", "5", "p=%20")]
        );
    }

    #[test]
    fn empty_list_members_are_skipped() {
        assert_eq!(
            parse(&["a=1,, ,b=2,"]),
            vec![entry("a", "1", ""), entry("b", "2", "")]
        );
    }

    #[test]
    fn the_last_of_duplicate_keys_wins() {
        assert_eq!(
            parse(&["k=first;p", "k=second"]),
            vec![entry("k", "second", "")]
        );
    }

    #[test]
    fn a_baggage_of_64_members_and_8192_bytes_is_extracted_whole() {
        let members = sixty_four_members_of_8192_bytes();
        let list = members.join(",");
        assert_eq!(list.len(), 8192);
        let baggage = parse_baggage(&[list.as_str()], BaggageLimits::default());
        assert_eq!(baggage.len(), 64);
        assert_eq!(baggage.get("k00").map(|v| v.as_str().len()), Some(124));
        assert_eq!(baggage.get("k63").map(|v| v.as_str().len()), Some(123));
    }

    #[test]
    fn a_65th_member_is_dropped_on_extraction() {
        let members: Vec<String> = (0..65).map(|i| format!("k{i:02}=1")).collect();
        let list = members.join(",");
        let baggage = parse_baggage(&[list.as_str()], BaggageLimits::default());
        assert_eq!(baggage.len(), 64);
        assert_eq!(
            baggage.get("k63").map(opentelemetry::StringValue::as_str),
            Some("1")
        );
        assert_eq!(baggage.get("k64"), None);
    }

    #[test]
    fn a_member_that_would_exceed_8192_bytes_is_dropped_whole() {
        // 4003 bytes + "," + 4189 bytes = 8193 bytes: the second member is
        // dropped whole, and a later member that still fits is kept.
        let first = format!("a={}", "v".repeat(4001));
        let second = format!("b={}", "v".repeat(4187));
        assert_eq!(first.len() + 1 + second.len(), 8193);
        let baggage = parse_baggage(
            &[first.as_str(), second.as_str(), "c=1"],
            BaggageLimits::default(),
        );
        assert_eq!(baggage.get("a").map(|v| v.as_str().len()), Some(4001));
        assert_eq!(baggage.get("b"), None);
        assert_eq!(
            baggage.get("c").map(opentelemetry::StringValue::as_str),
            Some("1")
        );
        assert_eq!(baggage.len(), 2);
    }

    #[test]
    fn the_limits_apply_to_all_baggage_headers_combined() {
        let mut members = sixty_four_members_of_8192_bytes();
        let (first_half, second_half) = members.split_at(32);
        let first = first_half.join(",");
        let second = second_half.join(",");
        let cx = extract(&[first.as_str(), second.as_str(), "extra=1"]);
        assert_eq!(cx.baggage().len(), 64, "8192 bytes over two headers fit");
        assert_eq!(cx.baggage().get("extra"), None, "a 65th member does not");

        // One byte more in the last member makes the combination 8193 bytes.
        members[63].push('v');
        let (first_half, second_half) = members.split_at(32);
        let first = first_half.join(",");
        let second = second_half.join(",");
        let cx = extract(&[first.as_str(), second.as_str()]);
        assert_eq!(cx.baggage().len(), 63);
        assert_eq!(cx.baggage().get("k63"), None);
        assert!(cx.baggage().get("k62").is_some());
    }

    #[test]
    fn custom_limits_are_applied_on_extraction() {
        let propagator = BaggagePropagator::with_limits(BaggageLimits {
            max_members: 2,
            max_bytes: 100,
        });
        assert_eq!(
            propagator.limits(),
            BaggageLimits {
                max_members: 2,
                max_bytes: 100
            }
        );
        let map = headers(&["a=1,b=2,c=3"]);
        let cx = propagator.extract_with_context(&Context::new(), &HeaderExtractor(&map));
        assert_eq!(
            entries(cx.baggage()),
            vec![entry("a", "1", ""), entry("b", "2", "")]
        );
    }

    #[test]
    fn a_missing_header_leaves_the_context_unchanged() {
        let base = Context::new().with_baggage(baggage_of(&[("kept", "1")]));
        let map = HeaderMap::new();
        let cx = BaggagePropagator::new().extract_with_context(&base, &HeaderExtractor(&map));
        assert_eq!(entries(cx.baggage()), vec![entry("kept", "1", "")]);
    }

    #[test]
    fn a_header_without_valid_members_leaves_the_context_unchanged() {
        let base = Context::new().with_baggage(baggage_of(&[("kept", "1")]));
        let map = headers(&["bad key=1,,novalue"]);
        let cx = BaggagePropagator::new().extract_with_context(&base, &HeaderExtractor(&map));
        assert_eq!(entries(cx.baggage()), vec![entry("kept", "1", "")]);
    }

    #[test]
    fn extraction_replaces_the_baggage_already_in_the_context() {
        let base = Context::new().with_baggage(baggage_of(&[("old", "1")]));
        let map = headers(&["new=2"]);
        let cx = BaggagePropagator::new().extract_with_context(&base, &HeaderExtractor(&map));
        assert_eq!(entries(cx.baggage()), vec![entry("new", "2", "")]);
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let mut map = HeaderMap::new();
        map.append("Baggage", HeaderValue::from_static("userId=alice"));
        let cx =
            BaggagePropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(&map));
        assert_eq!(entries(cx.baggage()), vec![entry("userId", "alice", "")]);
    }

    #[test]
    fn a_non_ascii_header_value_contributes_no_members() {
        let mut map = headers(&["good=1"]);
        map.append(
            "baggage",
            HeaderValue::from_bytes("bad=\u{e9}".as_bytes()).expect("obs-text is valid"),
        );
        let cx =
            BaggagePropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(&map));
        assert_eq!(entries(cx.baggage()), vec![entry("good", "1", "")]);
    }

    // injection

    #[test]
    fn a_value_with_a_space_is_percent_encoded() {
        assert_eq!(
            inject(
                baggage_of(&[("company", "Trom Chocolatier")]),
                &BaggagePropagator::new()
            )
            .as_deref(),
            Some("company=Trom%20Chocolatier")
        );
    }

    #[test]
    fn a_non_ascii_value_is_percent_encoded_as_utf8() {
        assert_eq!(
            inject(
                baggage_of(&[("userId", "Am\u{e9}lie")]),
                &BaggagePropagator::new()
            )
            .as_deref(),
            Some("userId=Am%C3%A9lie")
        );
    }

    #[test]
    fn percent_and_delimiters_in_a_value_are_percent_encoded() {
        assert_eq!(
            inject(
                baggage_of(&[("k", "100%,\"a;b\\c=d\te")]),
                &BaggagePropagator::new()
            )
            .as_deref(),
            Some("k=100%25%2C%22a%3Bb%5Cc%3Dd%09e")
        );
    }

    #[test]
    fn members_are_injected_sorted_by_key() {
        assert_eq!(
            inject(
                baggage_of(&[("userId", "alice"), ("isProduction", "false"), ("b", "1")]),
                &BaggagePropagator::new()
            )
            .as_deref(),
            Some("b=1,isProduction=false,userId=alice")
        );
    }

    #[test]
    fn properties_are_injected_after_the_value() {
        let baggage = Baggage::from([
            KeyValueMetadata::new("key1", "value1", "property1;property2"),
            KeyValueMetadata::new("key3", "value3", ";propertyKey=propertyValue"),
        ]);
        assert_eq!(
            inject(baggage, &BaggagePropagator::new()).as_deref(),
            Some("key1=value1;property1;property2,key3=value3;propertyKey=propertyValue")
        );
    }

    #[test]
    fn a_member_with_invalid_properties_is_not_injected() {
        let baggage = Baggage::from([
            KeyValueMetadata::new("bad", "1", "not a property"),
            KeyValueMetadata::new("good", "2", "p"),
        ]);
        assert_eq!(
            inject(baggage, &BaggagePropagator::new()).as_deref(),
            Some("good=2;p")
        );
    }

    #[test]
    fn an_empty_baggage_injects_no_header() {
        assert_eq!(inject(Baggage::new(), &BaggagePropagator::new()), None);
    }

    #[test]
    fn a_baggage_of_64_members_and_8192_bytes_is_injected_whole() {
        let members = sixty_four_members_of_8192_bytes();
        let list = members.join(",");
        let baggage = parse_baggage(&[list.as_str()], BaggageLimits::default());
        assert_eq!(
            serialize_baggage(&baggage, BaggageLimits::default()),
            Some(list)
        );
    }

    #[test]
    fn injection_stops_at_max_members() {
        let propagator = BaggagePropagator::with_limits(BaggageLimits {
            max_members: 2,
            max_bytes: 8192,
        });
        assert_eq!(
            inject(
                baggage_of(&[("c", "3"), ("a", "1"), ("b", "2")]),
                &propagator
            )
            .as_deref(),
            Some("a=1,b=2")
        );
    }

    #[test]
    fn injection_drops_a_member_that_would_exceed_max_bytes_whole() {
        // "a=1" (3) + ",b=22" (5) + ",d=4" (4) = 12 bytes; ",c=333" (6)
        // after "b" would make 14.
        let limits = BaggageLimits {
            max_members: 64,
            max_bytes: 12,
        };
        let baggage = baggage_of(&[("a", "1"), ("b", "22"), ("c", "333"), ("d", "4")]);
        assert_eq!(
            serialize_baggage(&baggage, limits).as_deref(),
            Some("a=1,b=22,d=4")
        );
    }

    // round trips

    #[test]
    fn encoded_values_round_trip_through_inject_and_extract() {
        let original = baggage_of(&[
            ("company", "Trom Chocolatier"),
            ("userId", "Am\u{e9}lie \u{1f36b}"),
            ("tricky", "100% a=b, c;d \"e\" \\f"),
        ]);
        let header = inject(original, &BaggagePropagator::new()).expect("header injected");
        let cx = extract(&[header.as_str()]);
        assert_eq!(
            entries(cx.baggage()),
            vec![
                entry("company", "Trom Chocolatier", ""),
                entry("tricky", "100% a=b, c;d \"e\" \\f", ""),
                entry("userId", "Am\u{e9}lie \u{1f36b}", ""),
            ]
        );
    }

    #[test]
    fn properties_round_trip_through_extract_and_inject() {
        let cx =
            extract(&["key1=value1;property1;property2, key3=value3; propertyKey=prop%20Value"]);
        let mut map = HeaderMap::new();
        BaggagePropagator::new().inject_context(&cx, &mut HeaderInjector(&mut map));
        assert_eq!(
            map.get("baggage"),
            Some(&HeaderValue::from_static(
                "key1=value1;property1;property2,key3=value3;propertyKey=prop%20Value"
            ))
        );
    }

    #[test]
    fn the_propagator_declares_the_baggage_header() {
        let propagator = BaggagePropagator::new();
        let fields: Vec<&str> = propagator.fields().collect();
        assert_eq!(fields, vec!["baggage"]);
    }
}
