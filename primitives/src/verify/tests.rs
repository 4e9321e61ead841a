//! The signature rule, against adversarial signatures: small-order and mixed-order keys
//! and nonces, non-canonical encodings, and forgeries mixed into batches with honest ones.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use proptest::prelude::*;

use super::*;

/// A scalar from a seed (a secret key or a nonce in these tests).
fn scalar(seed: u64) -> Scalar {
    let mut wide = [0u8; 64];
    wide[..8].copy_from_slice(&seed.to_le_bytes());
    wide[8] = 1;
    Scalar::from_bytes_mod_order_wide(&Sha512::digest(wide).into())
}

/// A point of order 8: `[ℓ]P` for a point P found by decoding hashes.
fn torsion_generator() -> EdwardsPoint {
    for i in 0u32.. {
        let bytes: [u8; 32] = Sha512::digest(i.to_le_bytes())[..32].try_into().unwrap();
        if let Some(p) = CompressedEdwardsY(bytes).decompress() {
            let t = p * -Scalar::ONE + p;
            if !t.is_identity() && !(t + t).is_identity() && !(t + t + t + t).is_identity() {
                return t;
            }
        }
    }
    unreachable!()
}

/// The 8 points of small order, identity first.
fn small_order_points() -> Vec<EdwardsPoint> {
    let t = torsion_generator();
    let mut points = vec![EdwardsPoint::default()];
    for _ in 1..8 {
        points.push(points[points.len() - 1] + t);
    }
    points
}

fn challenge(r: &[u8; 32], key: &[u8; 32], message: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(key);
    h.update(message);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Signs with secret scalar `a` and nonce `r`, publishing key `key_point` and nonce point
/// `nonce_point` (which a test may offset by torsion to make adversarial signatures).
fn sign_raw(
    a: Scalar,
    r: Scalar,
    key_point: EdwardsPoint,
    nonce_point: EdwardsPoint,
    message: &[u8],
) -> ([u8; 32], Signature) {
    let key = key_point.compress().0;
    let r_bytes = nonce_point.compress().0;
    let k = challenge(&r_bytes, &key, message);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    (key, Signature::from_bytes(sig))
}

/// The kinds of signature the property test mixes.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Honest,
    WrongMessage,
    /// R is a point of small order (the identity among them), S makes the equation hold.
    SmallOrderNonce(usize),
    /// R = rB + T for a torsion point T: the cofactored equation holds, the plain one not.
    MixedOrderNonce(usize),
    /// A = aB + T, signed honestly with a: the cofactored equation holds.
    MixedOrderKey(usize),
    /// The key is a point of small order.
    SmallOrderKey(usize),
    /// S + ℓ instead of S.
    NonCanonicalS,
    /// R's y coordinate written as y + p where that fits.
    NonCanonicalNonce(u8),
    /// Random bytes as the signature.
    Garbage,
}

struct Case {
    key: [u8; 32],
    message: Vec<u8>,
    signature: Signature,
}

fn make(kind: Kind, seed: u64) -> Case {
    let torsion = small_order_points();
    let a = scalar(seed);
    let r = scalar(seed ^ 0x5eed);
    let message = format!("message {seed}").into_bytes();
    let honest = |key_point, nonce_point| sign_raw(a, r, key_point, nonce_point, &message);
    let (key, signature) = match kind {
        Kind::Honest => honest(a * B, r * B),
        Kind::WrongMessage => {
            let (key, sig) = honest(a * B, r * B);
            return Case {
                key,
                message: b"another message".to_vec(),
                signature: sig,
            };
        }
        Kind::SmallOrderNonce(t) => {
            // S = k·a makes [S]B − R − [k]A = −R, of small order.
            let key = (a * B).compress().0;
            let r_bytes = torsion[t % 8].compress().0;
            let k = challenge(&r_bytes, &key, &message);
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r_bytes);
            sig[32..].copy_from_slice((k * a).as_bytes());
            (key, Signature::from_bytes(sig))
        }
        Kind::MixedOrderNonce(t) => honest(a * B, r * B + torsion[1 + t % 7]),
        Kind::MixedOrderKey(t) => honest(a * B + torsion[1 + t % 7], r * B),
        Kind::SmallOrderKey(t) => {
            let (_, sig) = honest(a * B, r * B);
            (torsion[t % 8].compress().0, sig)
        }
        Kind::NonCanonicalS => {
            let (key, sig) = honest(a * B, r * B);
            let mut bytes = *sig.as_bytes();
            let s = Scalar::from_canonical_bytes(bytes[32..].try_into().unwrap()).unwrap();
            bytes[32..].copy_from_slice(&add_group_order(s));
            (key, Signature::from_bytes(bytes))
        }
        Kind::NonCanonicalNonce(y) => {
            let (key, sig) = honest(a * B, r * B);
            let mut bytes = *sig.as_bytes();
            bytes[..32].copy_from_slice(&non_canonical_y(y % 19));
            (key, Signature::from_bytes(bytes))
        }
        Kind::Garbage => {
            let mut bytes = [0u8; 64];
            bytes.copy_from_slice(&Sha512::digest(seed.to_le_bytes()));
            ((a * B).compress().0, Signature::from_bytes(bytes))
        }
    };
    Case {
        key,
        message,
        signature,
    }
}

/// The 32-byte little-endian encoding of s + ℓ (below 2²⁵³, so it fits).
fn add_group_order(s: Scalar) -> [u8; 32] {
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = s.as_bytes()[i] as u16 + ELL[i] as u16 + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// y + p for a small y: the non-canonical twin of y's encoding.
fn non_canonical_y(y: u8) -> [u8; 32] {
    let mut bytes = [0xffu8; 32];
    bytes[31] = 0x7f;
    bytes[0] = 0xed + y;
    bytes
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Honest),
        1 => Just(Kind::WrongMessage),
        1 => (0usize..8).prop_map(Kind::SmallOrderNonce),
        1 => (0usize..7).prop_map(Kind::MixedOrderNonce),
        1 => (0usize..7).prop_map(Kind::MixedOrderKey),
        1 => (0usize..8).prop_map(Kind::SmallOrderKey),
        1 => Just(Kind::NonCanonicalS),
        1 => (0u8..19).prop_map(Kind::NonCanonicalNonce),
        1 => Just(Kind::Garbage),
    ]
}

fn verdicts_one_by_one(cases: &[Case]) -> Vec<bool> {
    cases
        .iter()
        .map(|c| verify_one(&c.key, &c.message, &c.signature))
        .collect()
}

fn verdicts_in_one_batch(cases: &[Case]) -> Vec<bool> {
    let items: Vec<Item<'_>> = cases
        .iter()
        .map(|c| (&c.key, c.message.as_slice(), &c.signature))
        .collect();
    verify_many(&items)
}

#[test]
fn each_kind_gets_the_documented_verdict_alone_and_in_a_batch() {
    let expected = [
        (Kind::Honest, true),
        (Kind::WrongMessage, false),
        (Kind::MixedOrderNonce(0), true),
        (Kind::MixedOrderKey(3), true),
        (Kind::NonCanonicalS, false),
        (Kind::Garbage, false),
    ]
    .into_iter()
    .chain((0..8).map(|t| (Kind::SmallOrderNonce(t), false)))
    .chain((0..8).map(|t| (Kind::SmallOrderKey(t), false)))
    .chain((0..19).map(|y| (Kind::NonCanonicalNonce(y), false)));
    for (seed, (kind, accepted)) in expected.enumerate() {
        let cases = [
            make(kind, seed as u64),
            make(Kind::Honest, 1000 + seed as u64),
        ];
        assert_eq!(
            verdicts_one_by_one(&cases),
            [accepted, true],
            "{kind:?} alone"
        );
        assert_eq!(
            verdicts_in_one_batch(&cases),
            [accepted, true],
            "{kind:?} in a batch"
        );
    }
}

#[test]
fn the_identity_nonce_with_an_honest_neighbour_is_refused_in_a_batch() {
    // The finding this rule fixes: R = identity, S = k·a, posted beside one honest delta.
    let cases = [make(Kind::SmallOrderNonce(0), 7), make(Kind::Honest, 8)];
    assert!(torsion_generator() != EdwardsPoint::default());
    assert_eq!(verdicts_in_one_batch(&cases), [false, true]);
}

#[test]
fn every_signature_the_strict_rfc_check_accepts_is_accepted() {
    // Deltas stored under the earlier rule (ed25519-dalek's verify_strict) stay valid.
    for seed in 0..64u64 {
        let key = crate::KeyPair::from_seed([seed as u8; 32]);
        let message = format!("delta {seed}");
        let signature = key.sign(message.as_bytes());
        let dalek_key = ed25519_dalek::VerifyingKey::from_bytes(key.author().as_bytes()).unwrap();
        let dalek_sig = ed25519_dalek::Signature::from_bytes(signature.as_bytes());
        assert!(dalek_key
            .verify_strict(message.as_bytes(), &dalek_sig)
            .is_ok());
        assert!(verify_one(
            key.author().as_bytes(),
            message.as_bytes(),
            &signature
        ));
    }
}

#[test]
fn non_canonical_encodings_of_keys_are_refused() {
    for y in 0..19u8 {
        assert!(strict_point(&non_canonical_y(y)).is_none(), "y = {y}");
    }
    for t in small_order_points() {
        assert!(strict_point(&t.compress().0).is_none());
    }
    assert!(strict_point(&(scalar(1) * B).compress().0).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batch_and_single_checks_give_the_same_verdicts(
        kinds in prop::collection::vec((kind_strategy(), any::<u64>()), 1..40)
    ) {
        let cases: Vec<Case> = kinds.iter().map(|(kind, seed)| make(*kind, *seed)).collect();
        let single = verdicts_one_by_one(&cases);
        prop_assert_eq!(verdicts_in_one_batch(&cases), single.clone());
        for ((kind, _), accepted) in kinds.iter().zip(&single) {
            if matches!(kind, Kind::Honest | Kind::MixedOrderNonce(_) | Kind::MixedOrderKey(_)) {
                prop_assert!(*accepted, "{:?} refused", kind);
            } else {
                prop_assert!(!*accepted, "{:?} accepted", kind);
            }
        }
    }
}
