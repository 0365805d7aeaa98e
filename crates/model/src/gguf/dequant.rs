//! Dequantization of ggml blocks to f32, following ggml's reference `dequantize_row_*`
//! (ggml-quants.c) and the python `gguf.quants` module that the fixtures compare against.
//! All arithmetic is done in f32 in the same order as the reference, so results are bit-equal.

use half::{bf16, f16};

use super::dtype::GgmlDType;
use super::error::{GgufError, Result};

/// Dequantize `bytes` holding `n_elements` values of type `dtype` (ggml order, fastest axis
/// first) into a new `Vec<f32>`.
pub fn dequantize(dtype: GgmlDType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; n_elements];
    dequantize_into(dtype, bytes, &mut out)?;
    Ok(out)
}

/// Dequantize into `out` (its length is the number of elements).
pub fn dequantize_into(dtype: GgmlDType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let expected = dtype.n_bytes(out.len());
    if expected != Some(bytes.len()) {
        return Err(GgufError::DequantLength {
            dtype: dtype.name(),
            n_elements: out.len(),
            expected_bytes: expected.unwrap_or(0),
            got_bytes: bytes.len(),
        });
    }
    let blocks = bytes.chunks_exact(dtype.block_bytes());
    let outs = out.chunks_exact_mut(dtype.block_size());
    match dtype {
        GgmlDType::F32 => blocks.zip(outs).for_each(|(b, y)| {
            y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }),
        GgmlDType::F16 => blocks.zip(outs).for_each(|(b, y)| y[0] = le_f16(b, 0)),
        GgmlDType::BF16 => blocks
            .zip(outs)
            .for_each(|(b, y)| y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        GgmlDType::Q4_0 => blocks.zip(outs).for_each(|(b, y)| block_q4_0(b, y)),
        GgmlDType::Q4_1 => blocks.zip(outs).for_each(|(b, y)| block_q4_1(b, y)),
        GgmlDType::Q5_0 => blocks.zip(outs).for_each(|(b, y)| block_q5_0(b, y)),
        GgmlDType::Q5_1 => blocks.zip(outs).for_each(|(b, y)| block_q5_1(b, y)),
        GgmlDType::Q8_0 => blocks.zip(outs).for_each(|(b, y)| block_q8_0(b, y)),
        GgmlDType::Q4K => blocks.zip(outs).for_each(|(b, y)| block_q4_k(b, y)),
        GgmlDType::Q5K => blocks.zip(outs).for_each(|(b, y)| block_q5_k(b, y)),
        GgmlDType::Q6K => blocks.zip(outs).for_each(|(b, y)| block_q6_k(b, y)),
    }
    Ok(())
}

fn le_f16(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Q4_0: `d: f16, qs: [u8; 16]`; `y[j] = (lo(qs[j]) - 8) d`, `y[j + 16] = (hi(qs[j]) - 8) d`.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: `d: f16, m: f16, qs: [u8; 16]`; `y = q d + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    let m = le_f16(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0f) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// Q5_0: `d: f16, qh: u32, qs: [u8; 16]`; the fifth bit of element j is bit j of `qh`;
/// `y = (q - 16) d`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let (lo, hi) = q5_pair(qs[j], qh, j);
        y[j] = (lo - 16) as f32 * d;
        y[j + 16] = (hi - 16) as f32 * d;
    }
}

/// Q5_1: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; `y = q d + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    let m = le_f16(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let (lo, hi) = q5_pair(qs[j], qh, j);
        y[j] = lo as f32 * d + m;
        y[j + 16] = hi as f32 * d + m;
    }
}

/// The 5-bit values of elements j and j + 16 of a Q5 block.
fn q5_pair(q: u8, qh: u32, j: usize) -> (i32, i32) {
    let xh0 = ((qh >> j) << 4) & 0x10;
    let xh1 = (qh >> (j + 12)) & 0x10;
    (
        ((q & 0x0f) as u32 | xh0) as i32,
        ((q >> 4) as u32 | xh1) as i32,
    )
}

/// Q8_0: `d: f16, qs: [i8; 32]`; `y = q d`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed 6-bit values of a Q4_K/Q5_K
/// super-block (ggml `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        (
            ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4)) as f32,
            ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32,
        )
    }
}

/// Q4_K super-block of 256: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`; eight
/// sub-blocks of 32 with 6-bit scale `sc` and min `m`: `y = (d sc) q - (dmin m)`.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    let dmin = le_f16(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (chunk, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Q5_K super-block of 256: `d, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`; as
/// Q4_K with a fifth bit per element from `qh`.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    let dmin = le_f16(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (chunk, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((q[l] & 0x0f) + h1) as f32 - m1;
            y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// Q6_K super-block of 256: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`; 6-bit
/// values minus 32, sixteen sub-blocks of 16 with an 8-bit scale: `y = (d sc) q`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_hand_block() {
        // d = 0.5, m = -1, low nibbles 0..15, high nibbles 15..0
        let mut b = vec![];
        b.extend_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
        b.extend_from_slice(&f16::from_f32(-1.0).to_bits().to_le_bytes());
        for j in 0..16u8 {
            b.push(j | ((15 - j) << 4));
        }
        let y = dequantize(GgmlDType::Q4_1, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(y[j], j as f32 * 0.5 - 1.0);
            assert_eq!(y[j + 16], (15 - j) as f32 * 0.5 - 1.0);
        }
    }

    #[test]
    fn wrong_length_is_an_error() {
        let e = dequantize(GgmlDType::Q8_0, &[0u8; 33], 32).unwrap_err();
        assert!(e.to_string().contains("need 34 bytes, got 33"), "{e}");
    }
}
