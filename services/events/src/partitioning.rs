//! Kafka's default partitioner for keyed records: `(murmur2(key) & 0x7fffffff) % partitions`,
//! a port of `org.apache.kafka.common.utils.Utils.murmur2` (the Java client's, which librdkafka
//! offers as `murmur2_random`). Every TrendStream producer places keyed records this way, as a
//! Java producer would: loadgen and cdc-processor set the partition with it explicitly, the
//! runtime's and pg-capture's producers configure librdkafka's `murmur2_random`.

/// Kafka's murmur2 of `data`, as the Java client returns it (a signed 32-bit value).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `partitions` (> 0).
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `org.apache.kafka.common.utils.UtilsTest.testMurmur2`.
    #[test]
    fn matches_the_java_client() {
        let cases: [(&[u8], i32); 7] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo_the_count() {
        // (-790332482 & 0x7fffffff) = 1357151166; % 50 = 16.
        assert_eq!(partition_for(b"foobar", 50), 16);
        assert_eq!(partition_for(b"foobar", 1), 0);
        for n in 1..=64 {
            let key = format!("u-{n}");
            let p = partition_for(key.as_bytes(), 12);
            assert!((0..12).contains(&p));
        }
    }
}
