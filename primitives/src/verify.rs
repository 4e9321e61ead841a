//! The one rule by which Hypha accepts an ed25519 signature, for single and batch checks
//! alike (deltas, origin stamps and handshakes all go through here).
//!
//! A signature `(R, S)` by key `A` over message `M` is accepted when:
//! - `A` and `R` are canonical encodings (the y coordinate is below the field prime) of
//!   points on the curve, and neither is of small order (the identity among them);
//! - `S` is a canonical scalar (below the group order ℓ);
//! - the *cofactored* equation holds: `[8]([S]B − R − [k]A)` is the identity, where
//!   `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
//!
//! The cofactored equation is what makes the batch check agree with the single one: a
//! random linear combination `[8] Σ zᵢ([Sᵢ]B − Rᵢ − [kᵢ]Aᵢ)` is the identity whenever every
//! term passes on its own, and (but with probability 2⁻¹²⁸) only then, because the
//! cofactor clears the torsion parts that a cofactorless batch would cancel or not
//! depending on the coefficients. This is ZIP-215's equation with RFC 8032's strictness on
//! encodings and small-order points; `markdown/DATA-MODEL.md` gives the reasons.

use std::collections::HashMap;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::Signature;

/// One `(public key, message, signature)` triple to check.
pub(crate) type Item<'a> = (&'a [u8; 32], &'a [u8], &'a Signature);

/// True when `bytes` encode a y coordinate below the field prime 2²⁵⁵ − 19 (the sign bit
/// aside). The encodings of y in [p, 2²⁵⁵) name the same points as smaller ones.
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    let top_is_max = bytes[31] & 0x7f == 0x7f;
    let middle_is_max = bytes[1..31].iter().all(|&b| b == 0xff);
    !(top_is_max && middle_is_max && bytes[0] >= 0xed)
}

/// The point a key or nonce encodes, if it is canonical, on the curve and not of small
/// order. (The two points with x = 0 are of small order, so a sign bit set on x = 0 is
/// refused here too.)
pub(crate) fn strict_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !is_canonical_y(bytes) {
        return None;
    }
    let point = CompressedEdwardsY(*bytes).decompress()?;
    (!point.is_small_order()).then_some(point)
}

/// A signature taken apart, with its key, ready for the equation.
struct Parsed {
    key_bytes: [u8; 32],
    r_bytes: [u8; 32],
    key: EdwardsPoint,
    nonce: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

fn parse(key_point: EdwardsPoint, item: &Item<'_>) -> Option<Parsed> {
    let (key, message, signature) = item;
    let bytes = signature.as_bytes();
    let r_bytes: [u8; 32] = bytes[..32].try_into().ok()?;
    let s_bytes: [u8; 32] = bytes[32..].try_into().ok()?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let nonce = strict_point(&r_bytes)?;
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(key.as_slice());
    hash.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    Some(Parsed {
        key_bytes: **key,
        r_bytes,
        key: key_point,
        nonce,
        s,
        k,
    })
}

fn equation_holds(p: &Parsed) -> bool {
    let s_b_minus_k_a = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-p.key, &p.s);
    (s_b_minus_k_a - p.nonce).mul_by_cofactor().is_identity()
}

/// Checks one signature under the rule above.
pub(crate) fn verify_one(key: &[u8; 32], message: &[u8], signature: &Signature) -> bool {
    let Some(point) = strict_point(key) else {
        return false;
    };
    parse(point, &(key, message, signature)).is_some_and(|p| equation_holds(&p))
}

/// Checks many signatures at once, one verdict per item, in order: exactly the verdicts
/// [`verify_one`] gives, at about a third of its cost per signature.
///
/// Items that fail the encoding checks are refused one by one; the rest go through one
/// batch equation, split in halves while it fails, so a forgery costs O(log n) extra
/// batches and never rejects its honest neighbours.
pub(crate) fn verify_many(items: &[Item<'_>]) -> Vec<bool> {
    let mut ok = vec![false; items.len()];
    let mut keys: HashMap<[u8; 32], Option<EdwardsPoint>> = HashMap::new();
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = *keys.entry(*item.0).or_insert_with(|| strict_point(item.0));
        if let Some(p) = key.and_then(|key| parse(key, item)) {
            parsed.push((i, p));
        }
    }
    let coefficients = coefficients(&parsed);
    let pending: Vec<usize> = (0..parsed.len()).collect();
    bisect(&parsed, &coefficients, &pending, &mut ok);
    ok
}

/// The batch's random 128-bit coefficients, derived from everything in the batch, so they
/// are unpredictable to whoever chose the signatures yet the verdict is reproducible.
fn coefficients(parsed: &[(usize, Parsed)]) -> Vec<Scalar> {
    let mut transcript = blake3::Hasher::new_derive_key("hypha signature batch v1");
    for (_, p) in parsed {
        transcript.update(&p.key_bytes);
        transcript.update(&p.r_bytes);
        transcript.update(p.s.as_bytes());
        transcript.update(p.k.as_bytes());
    }
    let mut stream = transcript.finalize_xof();
    parsed
        .iter()
        .map(|_| {
            let mut z = [0u8; 16];
            stream.fill(&mut z);
            Scalar::from(u128::from_le_bytes(z))
        })
        .collect()
}

fn bisect(parsed: &[(usize, Parsed)], z: &[Scalar], pending: &[usize], ok: &mut [bool]) {
    match pending {
        [] => {}
        [one] => ok[parsed[*one].0] = equation_holds(&parsed[*one].1),
        _ => {
            if batch_equation_holds(parsed, z, pending) {
                for &j in pending {
                    ok[parsed[j].0] = true;
                }
            } else {
                let (left, right) = pending.split_at(pending.len() / 2);
                bisect(parsed, z, left, ok);
                bisect(parsed, z, right, ok);
            }
        }
    }
}

/// `[8] Σ zᵢ([Sᵢ]B − Rᵢ − [kᵢ]Aᵢ) = 0`, with the terms of one key summed into one point.
fn batch_equation_holds(parsed: &[(usize, Parsed)], z: &[Scalar], pending: &[usize]) -> bool {
    let mut base = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(pending.len() + 8);
    let mut points = Vec::with_capacity(pending.len() + 8);
    let mut per_key: HashMap<[u8; 32], usize> = HashMap::new();
    for &j in pending {
        let p = &parsed[j].1;
        base += z[j] * p.s;
        scalars.push(-z[j]);
        points.push(p.nonce);
    }
    for &j in pending {
        let p = &parsed[j].1;
        let slot = *per_key.entry(p.key_bytes).or_insert_with(|| {
            scalars.push(Scalar::ZERO);
            points.push(p.key);
            scalars.len() - 1
        });
        scalars[slot] -= z[j] * p.k;
    }
    scalars.push(base);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests;
