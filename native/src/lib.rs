//! The worker's hot path in native code: event records (UTF-8 JSON, one event or an array of
//! events) decoded, validated and laid out as column buffers in one pass, without a Python object
//! per event.
//!
//! The rules are those of `agentflux.schemas.validate.check` (the JSON Schema files), with the
//! attrs of each type handed over by Python from the same field specs at start
//! (`agentflux.streams.native`), so the two cannot drift apart unnoticed:
//! `tests/unit/test_fast_path.py` runs the mutation corpus through both. This path is *sound*, not
//! complete: a record it accepts, the validator accepts event by event; a record with anything it
//! does not accept (a bad event, an integral float such as `1.0` in an integer field, a value it
//! does not read, invalid UTF-8 anywhere, a tombstone, an oversize record) is reported back whole
//! and Python re-reads it event by event for exact dead-letter reasons.

use std::borrow::Cow;
use std::fmt;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

// ------------------------------------------------------------------------------------------
// The schema: the envelope is fixed here; each type's attrs come from Python.

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Str,
    Int,
    Num,
    Bool,
    StrList,
    NumMap,
}

struct Field {
    name: String,
    kind: Kind,
    nullable: bool,
    allowed: Option<Vec<String>>,
    min_len: usize,
    min: i64,
    max: i64,
}

struct TypeSpec {
    name: String,
    version: i64,
    fields: Vec<Field>, // a handful: found by a scan, faster than hashing the key
    required: u64, // bit i: field i is required
    name_field: Option<usize>,
    dur_field: Option<usize>,
    scale: f64,
    err_field: Option<usize>,
    err_values: Vec<String>,
    measure_slot: Vec<Option<usize>>, // per field: the measure slot it fills, if any
    measure_defaults: [f64; SLOTS],   // a slot's value when its field is absent
    label_field: Option<usize>,
}

/// Measure slots per event: numbers read from the attrs for the KPIs (NaN: absent or null).
const SLOTS: usize = 6;

const ID_CHARS: usize = 36; // a UUID in canonical form

// ------------------------------------------------------------------------------------------
// Values as read: strings borrow from the record unless they hold escapes.

struct S<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for S<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = S<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<S<'de>, E> {
                Ok(S(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<S<'de>, E> {
                Ok(S(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<S<'de>, E> {
                Ok(S(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON integer within 64 bits (a float, even 1.0, is refused: the validator decides those).
struct I64(i64);

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = I64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<I64, E> {
                Ok(I64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<I64, E> {
                i64::try_from(v).map(I64).map_err(|_| E::custom("integer beyond 64 bits"))
            }
        }
        d.deserialize_i64(V)
    }
}

/// A JSON number (integer or not).
struct F64(f64);

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = F64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<F64, E> {
                Ok(F64(v))
            }
        }
        d.deserialize_f64(V)
    }
}

/// A JSON boolean.
struct B(bool);

impl<'de> Deserialize<'de> for B {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = B;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<B, E> {
                Ok(B(v))
            }
        }
        d.deserialize_bool(V)
    }
}

/// An array of strings, checked and dropped (the raw attrs keep it).
struct StrList;

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
                while seq.next_element::<S<'de>>()?.is_some() {}
                Ok(StrList)
            }
        }
        d.deserialize_seq(V)
    }
}

/// An object of numbers, checked and dropped.
struct NumMap;

impl<'de> Deserialize<'de> for NumMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NumMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NumMap, A::Error> {
                while map.next_key::<S<'de>>()?.is_some() {
                    map.next_value::<F64>()?;
                }
                Ok(NumMap)
            }
        }
        d.deserialize_map(V)
    }
}

/// Any JSON value, read and dropped: strings are decoded (escapes checked, as the codec's JSON
/// reader checks them) and nesting counts against serde_json's recursion limit (128), so a value
/// nested deeper goes to the codec, which decides (its reader stops at 1024).
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Skip;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(Skip)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
                while map.next_key::<S<'de>>()?.is_some() {
                    map.next_value::<Skip>()?;
                }
                Ok(Skip)
            }
        }
        d.deserialize_any(V)
    }
}

struct Source<'a> {
    runtime: Option<S<'a>>,
    host: Option<S<'a>>,
    pid: Option<i64>,
}

impl<'de> Deserialize<'de> for Source<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Source<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a source object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Source<'de>, A::Error> {
                let mut s = Source { runtime: None, host: None, pid: None };
                while let Some(k) = map.next_key::<S<'de>>()? {
                    match &*k.0 {
                        "runtime" => s.runtime = Some(map.next_value()?),
                        "host" => s.host = Some(map.next_value()?),
                        "pid" => s.pid = Some(map.next_value::<I64>()?.0),
                        _ => {
                            map.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}

/// One event's envelope as read (a key given twice: the last one counts, as in the validator).
#[derive(Default)]
struct Envelope<'a> {
    id: Option<S<'a>>,
    typ: Option<S<'a>>,
    v: Option<i64>,
    ts: Option<i64>,
    source: Option<Source<'a>>,
    agent_id: Option<S<'a>>,
    session_id: Option<S<'a>>,
    philosophy: Option<S<'a>>,
    trace_id: Option<S<'a>>,
    span_id: Option<S<'a>>,
    parent_span_id: Option<S<'a>>,
    attrs: Option<&'a RawValue>,
}

fn read_envelope<'de, A: MapAccess<'de>>(mut map: A) -> Result<Envelope<'de>, A::Error> {
    let mut e = Envelope::default();
    while let Some(k) = map.next_key::<S<'de>>()? {
        match &*k.0 {
            "id" => e.id = Some(map.next_value()?),
            "type" => e.typ = Some(map.next_value()?),
            "v" => e.v = Some(map.next_value::<I64>()?.0),
            "ts" => e.ts = Some(map.next_value::<I64>()?.0),
            "source" => e.source = Some(map.next_value()?),
            "agent_id" => e.agent_id = Some(map.next_value()?),
            "session_id" => e.session_id = Some(map.next_value()?),
            "philosophy" => e.philosophy = Some(map.next_value()?),
            "trace_id" => e.trace_id = map.next_value::<Option<S<'de>>>()?,
            "span_id" => e.span_id = map.next_value::<Option<S<'de>>>()?,
            "parent_span_id" => e.parent_span_id = map.next_value::<Option<S<'de>>>()?,
            "attrs" => e.attrs = Some(map.next_value()?),
            _ => {
                map.next_value::<Skip>()?;
            }
        }
    }
    Ok(e)
}

/// What the span analysis needs from an event's attrs.
struct Span<'a> {
    name: Option<S<'a>>,
    duration_ms: f64, // NaN: none
    error: bool,
    label: Option<S<'a>>,
    m: [f64; SLOTS],
}

struct AttrsSeed<'s> {
    spec: &'s TypeSpec,
}

impl<'de, 's> DeserializeSeed<'de> for AttrsSeed<'s> {
    type Value = Span<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Span<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

fn bad<E: de::Error>(what: &str) -> E {
    E::custom(what)
}

impl<'de, 's> Visitor<'de> for AttrsSeed<'s> {
    type Value = Span<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attrs object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Span<'de>, A::Error> {
        let spec = self.spec;
        let mut seen = 0u64;
        let mut span =
            Span { name: None, duration_ms: f64::NAN, error: false, label: None, m: spec.measure_defaults };
        while let Some(k) = map.next_key::<S<'de>>()? {
            let Some(i) = spec.fields.iter().position(|f| f.name == *k.0) else {
                map.next_value::<Skip>()?; // an attribute this version does not know: kept raw
                continue;
            };
            let f = &spec.fields[i];
            seen |= 1 << i;
            let dur = spec.dur_field == Some(i);
            let slot = spec.measure_slot[i];
            if let Some(j) = slot {
                span.m[j] = f64::NAN; // a repeated key: the last value counts, as for the others
            }
            match f.kind {
                Kind::Str => {
                    let v: Option<S<'de>> = map.next_value()?;
                    match v {
                        None if f.nullable => {
                            if spec.name_field == Some(i) {
                                span.name = None;
                            }
                            if spec.label_field == Some(i) {
                                span.label = None;
                            }
                            if spec.err_field == Some(i) {
                                span.error = false;
                            }
                        }
                        None => return Err(bad("null")),
                        Some(s) => {
                            if let Some(allowed) = &f.allowed {
                                if !allowed.iter().any(|a| *a == *s.0) {
                                    return Err(bad("not an allowed value"));
                                }
                            }
                            if f.min_len > 0 && s.0.chars().count() < f.min_len {
                                return Err(bad("too short"));
                            }
                            if spec.err_field == Some(i) {
                                span.error = spec.err_values.iter().any(|a| *a == *s.0);
                            }
                            if let Some(j) = slot {
                                // an enum: its index among the allowed values; any other
                                // string: 1 (present)
                                span.m[j] = match &f.allowed {
                                    Some(allowed) => {
                                        allowed.iter().position(|a| *a == *s.0).unwrap_or(0) as f64
                                    }
                                    None => 1.0,
                                };
                            }
                            if spec.label_field == Some(i) {
                                span.label = Some(S(s.0.clone()));
                            }
                            if spec.name_field == Some(i) {
                                span.name = Some(s);
                            }
                        }
                    }
                }
                Kind::Int => match map.next_value::<Option<I64>>()? {
                    None if f.nullable => {
                        if dur {
                            span.duration_ms = f64::NAN;
                        }
                    }
                    None => return Err(bad("null")),
                    Some(I64(x)) => {
                        if x < f.min || x > f.max {
                            return Err(bad("out of range"));
                        }
                        if dur {
                            span.duration_ms = x as f64 * spec.scale;
                        }
                        if let Some(j) = slot {
                            span.m[j] = x as f64;
                        }
                    }
                },
                Kind::Num => match map.next_value::<Option<F64>>()? {
                    None if f.nullable => {
                        if dur {
                            span.duration_ms = f64::NAN;
                        }
                    }
                    None => return Err(bad("null")),
                    Some(F64(x)) => {
                        if dur {
                            span.duration_ms = x * spec.scale;
                        }
                        if let Some(j) = slot {
                            span.m[j] = x;
                        }
                    }
                },
                Kind::Bool => match map.next_value::<Option<B>>()? {
                    None if !f.nullable => return Err(bad("null")),
                    None => {}
                    Some(B(x)) => {
                        if let Some(j) = slot {
                            span.m[j] = x as u8 as f64;
                        }
                    }
                },
                Kind::StrList => match map.next_value::<Option<StrList>>()? {
                    None if !f.nullable => return Err(bad("null")),
                    None => {}
                    Some(_) => {
                        if let Some(j) = slot {
                            span.m[j] = 1.0;
                        }
                    }
                },
                Kind::NumMap => match map.next_value::<Option<NumMap>>()? {
                    None if !f.nullable => return Err(bad("null")),
                    None => {}
                    Some(_) => {
                        if let Some(j) = slot {
                            span.m[j] = 1.0;
                        }
                    }
                },
            }
        }
        if seen & spec.required != spec.required {
            return Err(bad("a required attribute is missing"));
        }
        Ok(span)
    }
}

// ------------------------------------------------------------------------------------------
// Columns.

struct StrCol {
    offsets: Vec<i32>,
    data: Vec<u8>,
    valid: Vec<u8>, // one byte per row; packed into a bitmap on the way out
    nulls: usize,
}

impl StrCol {
    fn new() -> Self {
        StrCol { offsets: vec![0], data: Vec::new(), valid: Vec::new(), nulls: 0 }
    }
    fn push(&mut self, s: &str) {
        self.data.extend_from_slice(s.as_bytes());
        self.offsets.push(self.data.len() as i32);
        self.valid.push(1);
    }
    fn push_opt(&mut self, s: Option<&S>) {
        match s {
            Some(s) => self.push(&s.0),
            None => {
                self.offsets.push(self.data.len() as i32);
                self.valid.push(0);
                self.nulls += 1;
            }
        }
    }
    fn truncate(&mut self, rows: usize) {
        self.data.truncate(self.offsets[rows] as usize);
        self.offsets.truncate(rows + 1);
        self.nulls -= self.valid[rows..].iter().filter(|&&b| b == 0).count();
        self.valid.truncate(rows);
    }
}

const STR_COLUMNS: [&str; 12] = [
    "id", "agent_id", "session_id", "philosophy", "source_runtime", "source_host", "trace_id",
    "span_id", "parent_span_id", "name", "attrs", "label",
];

struct Columns {
    record: Vec<u32>,
    type_code: Vec<i16>,
    v: Vec<i32>,
    ts: Vec<i64>,
    pid: Vec<i64>,
    duration_ms: Vec<f64>,
    error: Vec<u8>,
    id_hash: Vec<i64>,
    measures: Vec<f64>, // SLOTS per row
    strs: Vec<StrCol>, // in STR_COLUMNS order
    failed: Vec<u32>,
}

impl Columns {
    fn new() -> Self {
        Columns {
            record: Vec::new(),
            type_code: Vec::new(),
            v: Vec::new(),
            ts: Vec::new(),
            pid: Vec::new(),
            duration_ms: Vec::new(),
            error: Vec::new(),
            id_hash: Vec::new(),
            measures: Vec::new(),
            strs: (0..STR_COLUMNS.len()).map(|_| StrCol::new()).collect(),
            failed: Vec::new(),
        }
    }
    fn rows(&self) -> usize {
        self.record.len()
    }
    fn truncate(&mut self, rows: usize) {
        self.record.truncate(rows);
        self.type_code.truncate(rows);
        self.v.truncate(rows);
        self.ts.truncate(rows);
        self.pid.truncate(rows);
        self.duration_ms.truncate(rows);
        self.error.truncate(rows);
        self.id_hash.truncate(rows);
        self.measures.truncate(rows * SLOTS);
        for c in &mut self.strs {
            c.truncate(rows);
        }
    }
}

/// FNV-1a, 64 bits: the de-duplication horizon's hash of an event id (the same function hashes
/// ids read back from the history, through `hash_ids`).
fn fnv1a(s: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in s {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h as i64
}

fn nonempty(s: &Option<S>) -> bool {
    matches!(s, Some(S(x)) if !x.is_empty())
}

// ------------------------------------------------------------------------------------------
// Records.

struct Ctx<'c> {
    types: &'c [TypeSpec],
    cols: &'c mut Columns,
    record: u32,
    events: usize,
}

impl<'c> Ctx<'c> {
    fn push<E: de::Error>(&mut self, e: Envelope) -> Result<(), E> {
        let id = e.id.ok_or_else(|| bad("id"))?;
        let chars = if id.0.is_ascii() { id.0.len() } else { id.0.chars().count() };
        if chars != ID_CHARS {
            return Err(bad("id"));
        }
        let typ = e.typ.ok_or_else(|| bad("type"))?;
        let code = (self.types.iter().position(|t| t.name == *typ.0))
            .ok_or_else(|| bad("unknown type"))?;
        let spec = &self.types[code];
        let v = e.v.ok_or_else(|| bad("v"))?;
        if v < 1 || v > spec.version {
            return Err(bad("v"));
        }
        let ts = e.ts.ok_or_else(|| bad("ts"))?;
        if ts < 0 {
            return Err(bad("ts"));
        }
        let src = e.source.ok_or_else(|| bad("source"))?;
        let pid = src.pid.ok_or_else(|| bad("source.pid"))?;
        if !nonempty(&src.runtime) || !nonempty(&src.host) || !nonempty(&e.agent_id)
            || !nonempty(&e.session_id) || !nonempty(&e.philosophy)
        {
            return Err(bad("a required string is missing or empty"));
        }
        let raw = e.attrs.ok_or_else(|| bad("attrs"))?;
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let span = AttrsSeed { spec }.deserialize(&mut de).map_err(|x| bad(&x.to_string()))?;
        let c = &mut *self.cols;
        c.record.push(self.record);
        c.type_code.push(code as i16);
        c.v.push(v as i32);
        c.ts.push(ts);
        c.pid.push(pid);
        c.duration_ms.push(span.duration_ms);
        c.error.push(span.error as u8);
        c.id_hash.push(fnv1a(id.0.as_bytes()));
        c.measures.extend_from_slice(&span.m);
        let s = &mut c.strs;
        s[0].push(&id.0);
        s[1].push_opt(e.agent_id.as_ref());
        s[2].push_opt(e.session_id.as_ref());
        s[3].push_opt(e.philosophy.as_ref());
        s[4].push_opt(src.runtime.as_ref());
        s[5].push_opt(src.host.as_ref());
        s[6].push_opt(e.trace_id.as_ref());
        s[7].push_opt(e.span_id.as_ref());
        s[8].push_opt(e.parent_span_id.as_ref());
        s[9].push_opt(span.name.as_ref());
        s[10].push(raw.get());
        s[11].push_opt(span.label.as_ref());
        self.events += 1;
        Ok(())
    }
}

impl<'de, 'c> Visitor<'de> for &mut Ctx<'c> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event or an array of events")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let e = read_envelope(map)?;
        self.push(e)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(e) = seq.next_element_seed(EnvelopeSeed)? {
            self.push(e)?;
        }
        Ok(())
    }
}

struct EnvelopeSeed;

impl<'de> DeserializeSeed<'de> for EnvelopeSeed {
    type Value = Envelope<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Envelope<'de>, A::Error> {
                read_envelope(map)
            }
        }
        d.deserialize_map(V)
    }
}

const BOM: &[u8] = b"\xef\xbb\xbf";

impl Decoder {
    /// Append one record's events, or nothing (and report the record) if any part of it is not
    /// accepted.
    fn record(&self, cols: &mut Columns, index: u32, value: Option<&[u8]>, max_bytes: usize) {
        let rows = cols.rows();
        let ok = match value {
            Some(v) if v.len() <= max_bytes => {
                let body = v.strip_prefix(BOM).unwrap_or(v);
                match std::str::from_utf8(body) {
                    Ok(text) => {
                        let mut ctx = Ctx {
                            types: &self.types,
                            cols,
                            record: index,
                            events: 0,
                        };
                        let mut de = serde_json::Deserializer::from_str(text);
                        de.deserialize_any(&mut ctx).and_then(|_| de.end()).is_ok()
                            && ctx.events > 0
                    }
                    Err(_) => false,
                }
            }
            _ => false, // a tombstone or an oversize record: Python names the reason
        };
        if !ok {
            cols.truncate(rows);
            cols.failed.push(index);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Python.

#[pyclass(frozen, module = "agentflux._native")]
struct Decoder {
    types: Vec<TypeSpec>, // in type-code order
}

type FieldArg = (String, String, bool, bool, Option<Vec<String>>, usize, i64, i64);
type TypeArg = (String, i64, Vec<FieldArg>, Option<usize>, Option<usize>, f64, Option<usize>,
               Vec<String>, Vec<(usize, f64)>, Option<usize>);

fn bitmap(valid: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; valid.len().div_ceil(8)];
    for (i, &b) in valid.iter().enumerate() {
        out[i / 8] |= (b & 1) << (i % 8);
    }
    out
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain numeric types, read as their bytes (native endianness, as numpy reads them)
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

#[pymethods]
impl Decoder {
    /// ``types``: per event type, in type-code order: ``(name, version, fields, name field,
    /// duration field, scale to ms, error field, error values, measure fields (at most
    /// ``SLOTS``, in slot order: ``(field index, value when absent)``), label field)``; a field is ``(name, kind,
    /// nullable, required, allowed values or None, min length, minimum, maximum)`` with kind
    /// one of ``str int num bool str_list num_map``.
    #[new]
    fn new(types: Vec<TypeArg>) -> PyResult<Self> {
        let mut out = Vec::new();
        for (name, version, fields, name_field, dur_field, scale, err_field, err_values, measures,
             label_field) in types
        {
            if measures.len() > SLOTS || measures.iter().any(|&(i, _)| i >= fields.len()) {
                return Err(PyValueError::new_err(format!("{name}: at most {SLOTS} measure fields")));
            }
            let mut measure_slot = vec![None; fields.len()];
            let mut measure_defaults = [f64::NAN; SLOTS];
            for (j, &(i, default)) in measures.iter().enumerate() {
                measure_slot[i] = Some(j);
                measure_defaults[j] = default;
            }
            if fields.len() > 64 {
                return Err(PyValueError::new_err(format!("{name}: more than 64 attrs")));
            }
            let mut specs = Vec::new();
            let mut required = 0u64;
            for (i, (fname, kind, nullable, req, allowed, min_len, min, max)) in
                fields.into_iter().enumerate()
            {
                let kind = match kind.as_str() {
                    "str" => Kind::Str,
                    "int" => Kind::Int,
                    "num" => Kind::Num,
                    "bool" => Kind::Bool,
                    "str_list" => Kind::StrList,
                    "num_map" => Kind::NumMap,
                    other => {
                        return Err(PyValueError::new_err(format!("{name}.{fname}: kind {other}")))
                    }
                };
                if req {
                    required |= 1 << i;
                }
                specs.push(Field { name: fname, kind, nullable, allowed, min_len, min, max });
            }
            out.push(TypeSpec {
                name,
                version,
                fields: specs,
                required,
                name_field,
                dur_field,
                scale,
                err_field,
                err_values,
                measure_slot,
                measure_defaults,
                label_field,
            });
        }
        Ok(Decoder { types: out })
    }

    /// Decode ``values`` (a list of ``bytes`` or ``None``, one per Kafka record). Returns
    /// ``(events, failed records, numeric columns, string columns)``: numeric columns are the
    /// bytes of ``record`` (uint32), ``type_code`` (int16), ``v`` (int32), ``ts`` (int64),
    /// ``source_pid`` (int64), ``duration_ms`` (float64, NaN: none), ``error`` (bool) and
    /// ``id_hash`` (int64) and ``measures`` (float64, ``SLOTS`` per event); a string column is ``(offsets int32 bytes, data bytes, validity
    /// bitmap bytes or None, null count)``. The GIL is released while decoding.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyList>,
        max_bytes: usize,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let mut slices: Vec<Option<&[u8]>> = Vec::with_capacity(values.len());
        let items: Vec<Bound<'py, PyAny>> = values.iter().collect();
        for item in &items {
            if item.is_none() {
                slices.push(None);
            } else {
                slices.push(Some(item.downcast::<PyBytes>()?.as_bytes()));
            }
        }
        let cols = py.allow_threads(|| {
            let mut cols = Columns::new();
            for (i, v) in slices.iter().enumerate() {
                self.record(&mut cols, i as u32, *v, max_bytes);
            }
            cols
        });
        let total: usize = cols.strs.iter().map(|c| c.data.len()).max().unwrap_or(0);
        if total > i32::MAX as usize {
            return Err(PyValueError::new_err("a string column exceeds 2 GiB: decode fewer records at a time"));
        }
        let numeric = PyTuple::new(
            py,
            [
                PyBytes::new(py, as_bytes(&cols.record)),
                PyBytes::new(py, as_bytes(&cols.type_code)),
                PyBytes::new(py, as_bytes(&cols.v)),
                PyBytes::new(py, as_bytes(&cols.ts)),
                PyBytes::new(py, as_bytes(&cols.pid)),
                PyBytes::new(py, as_bytes(&cols.duration_ms)),
                PyBytes::new(py, &cols.error),
                PyBytes::new(py, as_bytes(&cols.id_hash)),
                PyBytes::new(py, as_bytes(&cols.measures)),
            ],
        )?;
        let mut strs = Vec::new();
        for c in &cols.strs {
            let validity = if c.nulls > 0 {
                PyBytes::new(py, &bitmap(&c.valid)).into_any()
            } else {
                py.None().into_bound(py)
            };
            strs.push(PyTuple::new(
                py,
                [
                    PyBytes::new(py, as_bytes(&c.offsets)).into_any(),
                    PyBytes::new(py, &c.data).into_any(),
                    validity,
                    c.nulls.into_pyobject(py)?.into_any(),
                ],
            )?);
        }
        PyTuple::new(
            py,
            [
                cols.rows().into_pyobject(py)?.into_any(),
                PyList::new(py, &cols.failed)?.into_any(),
                numeric.into_any(),
                PyTuple::new(py, strs)?.into_any(),
            ],
        )
    }
}

/// The id hashes (int64 bytes) of ``ids``, as ``Decoder.decode`` computes them.
#[pyfunction]
fn hash_ids<'py>(py: Python<'py>, ids: Vec<String>) -> Bound<'py, PyBytes> {
    let out: Vec<i64> = ids.iter().map(|s| fnv1a(s.as_bytes())).collect();
    PyBytes::new(py, as_bytes(&out))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decoder>()?;
    m.add_function(wrap_pyfunction!(hash_ids, m)?)?;
    m.add("STR_COLUMNS", STR_COLUMNS.to_vec())?;
    m.add("SLOTS", SLOTS)?;
    // an unoptimised build decodes ~15x slower: the worker warns, a test fails
    m.add("OPTIMISED", !cfg!(debug_assertions))?;
    Ok(())
}
