//! Mutations of a seed file, as a proptest strategy: what breaks parsers is rarely random
//! bytes but a truncation, a flipped bit, or a header field set to 0, 1 or a maximum.

use proptest::prelude::*;
use proptest::sample::Index;

/// One change to a byte string.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Cut the input at a position.
    Truncate(Index),
    /// Flip one bit.
    FlipBit(Index, u8),
    /// Set one byte.
    SetByte(Index, u8),
    /// Overwrite 2, 4 or 8 bytes with an integer that breaks size arithmetic.
    SetWord {
        /// Where (in the first 256 bytes when `header` is set: where the sizes are).
        at: Index,
        /// In the header region.
        header: bool,
        /// 2, 4 or 8 bytes.
        width: usize,
        /// The value.
        value: u64,
        /// Big-endian (IDX, some MAT-files) rather than little-endian.
        big_endian: bool,
    },
    /// Insert bytes.
    Insert(Index, Vec<u8>),
    /// Copy a stretch of the input elsewhere in it (repeats structures such as opcodes).
    Duplicate(Index, Index, u8),
}

/// The integers that break size arithmetic: 0, 1, powers of two and their neighbours, maxima.
fn special_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(0x7f),
        Just(0xff),
        Just(0x7fff),
        Just(0xffff),
        Just(0x7fff_ffff),
        Just(0x8000_0000),
        Just(0xffff_ffff),
        Just(u64::MAX),
        Just(i64::MAX as u64),
        (0u32..64).prop_map(|s| 1u64 << s),
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Truncate),
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        4 => (any::<Index>(), any::<bool>(), prop_oneof![Just(2usize), Just(4), Just(8)], special_value(), any::<bool>())
            .prop_map(|(at, header, width, value, big_endian)| Mutation::SetWord { at, header, width, value, big_endian }),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), any::<Index>(), any::<u8>()).prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
    ]
}

/// A seed (by index among `seeds`) and up to 6 mutations of it.
pub fn case(seeds: usize) -> impl Strategy<Value = (Index, Vec<Mutation>)> {
    assert!(seeds > 0, "a target needs a seed");
    (any::<Index>(), proptest::collection::vec(mutation(), 0..6))
}

/// `seed` with `mutations` applied in order.
pub fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in mutations {
        let n = b.len();
        match m {
            Mutation::Truncate(i) => b.truncate(i.index(n + 1)),
            Mutation::FlipBit(i, bit) if n > 0 => b[i.index(n)] ^= 1 << bit,
            Mutation::SetByte(i, v) if n > 0 => b[i.index(n)] = *v,
            Mutation::SetWord {
                at,
                header,
                width,
                value,
                big_endian,
            } if n >= *width => {
                let span = if *header { n.min(256) } else { n } - width + 1;
                let at = at.index(span);
                let bytes = if *big_endian {
                    value.to_be_bytes()[8 - width..].to_vec()
                } else {
                    value.to_le_bytes()[..*width].to_vec()
                };
                b[at..at + width].copy_from_slice(&bytes);
            }
            Mutation::Insert(i, bytes) => {
                let at = i.index(n + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Duplicate(from, to, len) if n > 0 => {
                let start = from.index(n);
                let end = (start + usize::from(*len) + 1).min(n);
                let piece = b[start..end].to_vec();
                let at = to.index(n + 1);
                b.splice(at..at, piece);
            }
            _ => {}
        }
    }
    b
}
