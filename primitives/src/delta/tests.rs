//! Unit tests for deltas: building, encoding, JSON, verification and bad input.

use proptest::prelude::*;

use super::*;
use crate::Stamp;

fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed([seed; 32])
}

fn alice_name() -> Delta {
    DeltaBuilder::new(Hlc::new(1_700_000_000_000, 3))
        .pointer(Pointer::entity("user", "alice", "name"))
        .pointer(Pointer::value("name", "Alice"))
        .sign(&key(1))
        .unwrap()
}

#[test]
fn signed_delta_verifies_and_exposes_its_parts() {
    let d = alice_name();
    d.verify().unwrap();
    assert_eq!(d.author(), key(1).author());
    assert_eq!(d.time(), Hlc::new(1_700_000_000_000, 3));
    assert_eq!(d.pointers().len(), 2);
    assert_eq!(
        d.id(),
        DeltaId::from_bytes(*blake3::hash(d.canonical_body()).as_bytes())
    );
    let targets: Vec<_> = d.target_entities().map(|(e, c)| (e.as_str(), c)).collect();
    assert_eq!(targets, vec![("alice", Some("name"))]);
}

#[test]
fn binary_form_round_trips() {
    let d = alice_name();
    let bytes = d.encode();
    assert_eq!(bytes.len(), d.encoded_len());
    assert_eq!(Delta::decode(&bytes).unwrap(), d);
}

#[test]
fn json_form_round_trips_exactly() {
    let d = DeltaBuilder::new(Hlc::new(5, 0))
        .pointer(Pointer::entity("e", "x", "p"))
        .pointer(Pointer::value("i", 1i64))
        .pointer(Pointer::value("f", 1.0f64))
        .pointer(Pointer::value("neg0", -0.0f64))
        .pointer(Pointer::value("b", false))
        .pointer(Pointer::value("n", Primitive::Null))
        .pointer(Pointer::negates(DeltaId::from_bytes([9; 32])))
        .sign(&key(2))
        .unwrap();
    let text = d.to_json_string();
    let back = Delta::from_json_str(&text).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.to_json_string(), text);
    // 1 and 1.0 stay distinct values.
    assert!(text.contains(r#""target":{"value":1}"#), "{text}");
    assert!(text.contains(r#""target":{"value":1.0}"#), "{text}");
}

#[test]
fn a_changed_byte_breaks_the_signature() {
    let d = alice_name();
    let mut bytes = d.encode();
    let last_body_byte = d.canonical_body().len() - 1;
    bytes[last_body_byte] ^= 0x01;
    match Delta::decode(&bytes) {
        Ok(tampered) => {
            assert_ne!(tampered.id(), d.id());
            assert!(matches!(tampered.verify(), Err(Error::BadSignature { .. })));
        }
        Err(e) => assert!(matches!(e, Error::Decode(_)), "{e}"),
    }
}

#[test]
fn a_signature_by_someone_else_is_rejected() {
    let d = alice_name();
    let forged = Delta::from_parts(
        None,
        key(2).author(),
        d.time(),
        d.pointers().to_vec(),
        d.signature(),
    )
    .unwrap();
    let err = forged.verify().unwrap_err();
    assert!(err.is_forgery());
    assert!(
        err.to_string().starts_with("bad signature on delta"),
        "{err}"
    );
}

#[test]
fn json_with_a_wrong_id_is_rejected() {
    let mut json = alice_name().to_json();
    json["id"] = serde_json::Value::String("00".repeat(32));
    let err = Delta::from_json(&json).unwrap_err();
    assert!(matches!(err, Error::IdMismatch { .. }), "{err}");
}

#[test]
fn json_without_a_signature_is_rejected() {
    let mut json = alice_name().to_json();
    json.as_object_mut().unwrap().remove("signature");
    assert_eq!(
        Delta::from_json(&json).unwrap_err(),
        Error::MissingSignature
    );
}

#[test]
fn malformed_json_is_a_json_error() {
    for text in ["{", "[]", r#"{"author": 1}"#, "null"] {
        assert!(
            matches!(Delta::from_json_str(text), Err(Error::Json(_))),
            "{text}"
        );
    }
    let mut json = alice_name().to_json();
    json["surprise"] = serde_json::json!(1);
    assert!(matches!(Delta::from_json(&json), Err(Error::Json(m)) if m.contains("unknown field")));
}

#[test]
fn json_values_must_be_scalars_and_in_range() {
    let err = Pointer::list_from_json_str(r#"[{"local_context":"a","target":{"value":[1]}}]"#)
        .unwrap_err();
    assert!(matches!(err, Error::Json(_)), "{err}");
    let err = Pointer::list_from_json_str(
        r#"[{"local_context":"a","target":{"value":18446744073709551615}}]"#,
    )
    .unwrap_err();
    assert!(matches!(err, Error::NumberOutOfRange(_)), "{err}");
}

#[test]
fn integer_values_outside_i64_are_refused_on_every_parse_path_and_the_edges_kept() {
    let pointers =
        |literal: &str| format!(r#"[{{"local_context":"n","target":{{"value":{literal}}}}}]"#);
    let delta_json = |literal: &str| {
        let d = DeltaBuilder::new(Hlc::new(1, 0))
            .pointer(Pointer::value("n", 1234567i64))
            .sign(&key(1))
            .unwrap();
        d.to_json_string().replace("1234567", literal)
    };
    let table: [(&str, Option<Primitive>); 10] = [
        ("9223372036854775807", Some(Primitive::Int(i64::MAX))),
        ("-9223372036854775808", Some(Primitive::Int(i64::MIN))),
        ("0", Some(Primitive::Int(0))),
        ("9223372036854775808", None),
        ("-9223372036854775809", None),
        ("18446744073709551615", None),
        ("18446744073709551616", None),
        ("-18446744073709551616", None),
        ("123456789012345678901234567890", None),
        (
            "1.8446744073709552e19",
            Some(Primitive::Float(1.8446744073709552e19)),
        ),
    ];
    for (literal, expected) in table {
        let parsed = Pointer::list_from_json_str(&pointers(literal));
        match &expected {
            Some(value) => {
                let parsed = parsed.unwrap_or_else(|e| panic!("{literal}: {e}"));
                assert_eq!(parsed[0].target, Target::Value(value.clone()), "{literal}");
            }
            None => assert!(
                matches!(&parsed, Err(Error::NumberOutOfRange(n)) if n == literal),
                "{literal}: {parsed:?}"
            ),
        }
        // A signed delta's JSON form: only the value changes (so the signature no longer
        // matches, but the number is refused before that matters).
        let from_delta = Delta::from_json_str(&delta_json(literal));
        if expected.is_none() {
            assert!(
                matches!(&from_delta, Err(Error::NumberOutOfRange(n)) if n == literal),
                "{literal}: {from_delta:?}"
            );
        }
    }
}

#[test]
fn shape_rules_hold_for_every_way_in() {
    let k = key(1);
    let sign = |pointers: Vec<Pointer>| {
        DeltaBuilder::new(Hlc::new(1, 0))
            .pointers(pointers)
            .sign(&k)
    };
    assert_eq!(sign(vec![]).unwrap_err(), Error::NoPointers);
    assert_eq!(
        sign(vec![Pointer::value("", 1i64)]).unwrap_err(),
        Error::EmptyField {
            index: 0,
            field: "local_context"
        }
    );
    assert_eq!(
        sign(vec![
            Pointer::value("a", 1i64),
            Pointer::entity("b", "x", "")
        ])
        .unwrap_err(),
        Error::EmptyField {
            index: 1,
            field: "target_context"
        }
    );
    assert_eq!(
        sign(vec![Pointer::entity("b", "", "p")]).unwrap_err(),
        Error::EmptyField {
            index: 0,
            field: "entity id"
        }
    );
    assert_eq!(
        sign(vec![Pointer::value("f", f64::NAN)]).unwrap_err(),
        Error::NonFiniteNumber { index: 0 }
    );
    let too_many = (0..=MAX_POINTERS)
        .map(|i| Pointer::value("v", i as i64))
        .collect();
    assert!(matches!(
        sign(too_many).unwrap_err(),
        Error::TooManyPointers { .. }
    ));

    // The decoder applies the same rules to bytes that were never built here.
    let json = r#"[{"local_context":"","target":{"value":1}}]"#;
    let pointers = Pointer::list_from_json_str(json).unwrap();
    assert!(Delta::from_parts(
        None,
        k.author(),
        Hlc::new(1, 0),
        pointers,
        Signature::from_bytes([0; 64])
    )
    .is_err());
}

#[test]
fn unknown_format_versions_are_refused() {
    let mut bytes = alice_name().encode();
    bytes[0] = 2;
    assert_eq!(
        Delta::decode(&bytes).unwrap_err(),
        Error::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
}

#[test]
fn every_truncation_is_a_clean_error() {
    let bytes = alice_name().encode();
    for len in 0..bytes.len() {
        assert!(
            Delta::decode(&bytes[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn batch_verification_finds_each_forgery_and_spares_the_rest() {
    let mut deltas: Vec<Delta> = (0..64)
        .map(|i| {
            DeltaBuilder::new(Hlc::new(i, 0))
                .pointer(Pointer::value("n", i as i64))
                .sign(&key((i % 3) as u8 + 1))
                .unwrap()
        })
        .collect();
    for bad in [5usize, 6, 40] {
        let d = &deltas[bad];
        deltas[bad] = Delta::from_parts(
            None,
            d.author(),
            d.time(),
            d.pointers().to_vec(),
            Signature::from_bytes([7; 64]),
        )
        .unwrap();
    }
    let refs: Vec<&Delta> = deltas.iter().collect();
    let results = verify_batch(&refs);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.is_err(), [5, 6, 40].contains(&i), "delta {i}: {r:?}");
    }
    assert!(verify_batch(&[]).is_empty());
}

#[test]
fn an_invalid_author_key_fails_only_its_delta() {
    let good = alice_name();
    // The all-zero key decodes but is of small order, so it is weak.
    let bad = Delta::from_parts(
        None,
        AuthorKey::from_bytes([0; 32]),
        Hlc::new(1, 0),
        good.pointers().to_vec(),
        good.signature(),
    )
    .unwrap();
    let results = verify_batch(&[&good, &bad]);
    assert!(results[0].is_ok());
    assert!(results[1].is_err());
}

#[test]
fn negation_pointers_are_found() {
    let target = alice_name();
    let neg = DeltaBuilder::new(Hlc::new(2, 0))
        .pointer(Pointer::negates(target.id()))
        .sign(&key(1))
        .unwrap();
    assert_eq!(neg.negated_ids().collect::<Vec<_>>(), vec![target.id()]);
    assert_eq!(target.negated_ids().count(), 0);
}

#[test]
fn filter_document_has_convenience_fields() {
    let d = alice_name();
    let stamp = Stamp::sign(d.id(), crate::Seq::FIRST, &key(9));
    let doc = d.filter_document(&[stamp]);
    assert_eq!(doc["targets"], serde_json::json!(["alice"]));
    assert_eq!(doc["contexts"], serde_json::json!(["user", "name"]));
    assert_eq!(doc["target_contexts"], serde_json::json!(["name"]));
    assert_eq!(doc["values"], serde_json::json!(["Alice"]));
    assert_eq!(
        doc["hosts"],
        serde_json::json!([key(9).host_id().to_string()])
    );
    assert_eq!(doc["time"]["ms"], serde_json::json!(1_700_000_000_000u64));
}

fn arb_primitive() -> impl Strategy<Value = Primitive> {
    prop_oneof![
        ".{0,12}".prop_map(Primitive::String),
        any::<i64>().prop_map(Primitive::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Primitive::Float),
        any::<bool>().prop_map(Primitive::Bool),
        Just(Primitive::Null),
    ]
}

fn arb_pointer() -> impl Strategy<Value = Pointer> {
    let target = prop_oneof![
        "[a-z0-9:]{1,10}".prop_map(|s| Target::Entity(EntityId::new(s))),
        arb_primitive().prop_map(Target::Value),
        any::<[u8; 32]>().prop_map(|b| Target::Delta(DeltaId::from_bytes(b))),
    ];
    ("[a-z_]{1,8}", target, proptest::option::of("[a-z_]{1,8}")).prop_map(
        |(local_context, target, target_context)| Pointer {
            local_context,
            target,
            target_context,
        },
    )
}

proptest! {
    #[test]
    fn any_valid_delta_round_trips_through_bytes_and_json(
        ms in any::<u64>(), logical in any::<u32>(),
        pointers in proptest::collection::vec(arb_pointer(), 1..6),
        seed in any::<u8>(),
    ) {
        let d = DeltaBuilder::new(Hlc::new(ms, logical)).pointers(pointers).sign(&key(seed)).unwrap();
        let decoded = Delta::decode(&d.encode()).unwrap();
        prop_assert_eq!(&decoded, &d);
        prop_assert!(decoded.verify().is_ok());
        let from_json = Delta::from_json_str(&d.to_json_string()).unwrap();
        prop_assert_eq!(&from_json, &d);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Delta::decode(&bytes);
    }

    #[test]
    fn mutated_encodings_never_verify_as_the_original(index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let d = alice_name();
        let mut bytes = d.encode();
        let i = index.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(m) = Delta::decode(&bytes) {
            prop_assert!(m.verify().is_err() || m == d);
        }
    }
}
