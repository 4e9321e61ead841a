//! Golden byte fixtures: encodings written by earlier builds must keep decoding to the same
//! delta, and this build must keep writing the same bytes.
//!
//! Regenerate (only for a deliberate format change, with a new version byte) with
//! `HYPHA_BLESS=1 cargo test -p hypha-primitives --test golden`.

use std::path::PathBuf;

use hypha_primitives::{
    Delta, DeltaBuilder, DeltaId, Hlc, KeyPair, Pointer, Primitive, Seq, Stamp,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The delta the v1 fixture holds: every target kind and both target-context forms.
fn v1_delta() -> Delta {
    DeltaBuilder::new(Hlc::new(1_700_000_000_123, 7))
        .pointer(Pointer::entity("user", "alice", "name"))
        .pointer(Pointer::value("name", "Alice ✓"))
        .pointer(Pointer::value("age", 42i64))
        .pointer(Pointer::value("score", -1.5f64))
        .pointer(Pointer::value("admin", true))
        .pointer(Pointer::value("nick", Primitive::Null))
        .pointer(Pointer::negates(DeltaId::from_bytes([0x11; 32])))
        .sign(&KeyPair::from_seed([0x42; 32]))
        .unwrap()
}

fn check_or_bless(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = fixture(name);
    if std::env::var_os("HYPHA_BLESS").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn delta_v1_fixture_decodes_verifies_and_re_encodes_identically() {
    let expected = v1_delta();
    let stored = check_or_bless("delta-v1.bin", &expected.encode());
    assert_eq!(stored[0], 1, "format version byte");
    let decoded = Delta::decode(&stored).unwrap();
    decoded.verify().unwrap();
    assert_eq!(decoded, expected);
    assert_eq!(decoded.encode(), stored);
}

#[test]
fn delta_v1_json_fixture_parses_to_the_same_delta() {
    let expected = v1_delta();
    let text = String::from_utf8(check_or_bless(
        "delta-v1.json",
        expected.to_json_string().as_bytes(),
    ))
    .unwrap();
    assert_eq!(Delta::from_json_str(&text).unwrap(), expected);
    assert_eq!(expected.to_json_string(), text);
}

#[test]
fn stamp_v1_fixture_decodes_and_verifies() {
    let delta = v1_delta();
    let stamp = Stamp::sign(delta.id(), Seq::new(3), &KeyPair::from_seed([0x43; 32]));
    let stored = check_or_bless("stamp-v1.bin", &stamp.encode_v1().unwrap());
    let decoded = Stamp::decode_v1(&stored).unwrap();
    assert_eq!(decoded, stamp);
    decoded.verify(delta.id()).unwrap();
}

#[test]
fn stamp_v2_fixtures_decode_and_verify() {
    let delta = v1_delta();
    let key = KeyPair::from_seed([0x43; 32]);
    let signed = Stamp::sign(delta.id(), Seq::new(3), &key);
    let stored = check_or_bless("stamp-v2-signed.bin", &signed.encode());
    assert_eq!(Stamp::decode(&stored).unwrap(), signed);
    // A batch of three with the fixture delta in the middle.
    let ids = [
        DeltaId::from_bytes([1; 32]),
        delta.id(),
        DeltaId::from_bytes([2; 32]),
    ];
    let batch = Stamp::sign_batch(&ids, Seq::new(4), &key).unwrap();
    let stored = check_or_bless("stamp-v2-batch.bin", &batch[1].encode());
    let decoded = Stamp::decode(&stored).unwrap();
    assert_eq!(decoded, batch[1]);
    decoded.verify(delta.id()).unwrap();
    assert_eq!(decoded.seq(), Seq::new(5));
}
