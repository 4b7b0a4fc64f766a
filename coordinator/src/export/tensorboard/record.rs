//! TFRecord framing and CRC32C.
//!
//! Every record in an event file is
//!
//! ```text
//! u64 LE  length of data
//! u32 LE  masked_crc32c(the 8 length bytes)
//! [u8]    data (a serialized Event)
//! u32 LE  masked_crc32c(data)
//! ```
//!
//! (TensorBoard's own writer: `tensorboard/summary/writer/record_writer.py`;
//! its reader and `masked_crc32c`: `tensorboard/compat/tensorflow_stub/pywrap_tensorflow.py`.)

use std::io::{self, Read, Write};

/// CRC32C lookup table (Castagnoli, reflected polynomial 0x82F63B78), 8
/// slices for slicing-by-8; slice 0 is the classic byte-at-a-time table.
static TABLE: [[u32; 256]; 8] = make_table();

const fn make_table() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

/// CRC32C of `data` (check value: `crc32c(b"123456789") == 0xE3069283`).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Slicing-by-8: fold 8 bytes per step with 8 independent lookups.
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = TABLE[7][(lo & 0xff) as usize]
            ^ TABLE[6][((lo >> 8) & 0xff) as usize]
            ^ TABLE[5][((lo >> 16) & 0xff) as usize]
            ^ TABLE[4][(lo >> 24) as usize]
            ^ TABLE[3][c[4] as usize]
            ^ TABLE[2][c[5] as usize]
            ^ TABLE[1][c[6] as usize]
            ^ TABLE[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLE[0][((crc ^ b as u32) & 0xff) as usize];
    }
    !crc
}

/// TFRecord's masked CRC: `((crc >> 15) | (crc << 17)) + 0xa282ead8`
/// (wrapping), i.e. rotate right by 15 and add a constant, so that a CRC
/// stored inside CRC'd data does not make the outer CRC degenerate.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one framed record.
pub fn write_record<W: Write>(w: &mut W, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    w.write_all(&len)?;
    w.write_all(&masked_crc32c(&len).to_le_bytes())?;
    w.write_all(data)?;
    w.write_all(&masked_crc32c(data).to_le_bytes())
}

/// Bytes a record of `data_len` bytes takes in the file (its framing: 8 + 4 + 4).
pub fn framed_len(data_len: usize) -> u64 {
    data_len as u64 + 16
}

/// Reads every record of a TFRecord stream, verifying both CRCs.
///
/// Returns `InvalidData` on a CRC mismatch and `UnexpectedEof` on a truncated
/// record. Meant for tests and debugging (it reads everything into memory).
pub fn read_records<R: Read>(mut r: R) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 12];
        // Distinguish a clean end of stream from a truncated header.
        let first = r.read(&mut header[..1])?;
        if first == 0 {
            return Ok(out);
        }
        r.read_exact(&mut header[1..])?;
        let (len_bytes, crc_bytes) = header.split_at(8);
        check_crc(len_bytes, crc_bytes, "length")?;
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap());
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "record too long"))?;
        let mut data = vec![0u8; len];
        r.read_exact(&mut data)?;
        let mut crc = [0u8; 4];
        r.read_exact(&mut crc)?;
        check_crc(&data, &crc, "data")?;
        out.push(data);
    }
}

fn check_crc(data: &[u8], stored: &[u8], what: &str) -> io::Result<()> {
    let stored = u32::from_le_bytes(stored.try_into().unwrap());
    if masked_crc32c(data) != stored {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TFRecord {what} CRC mismatch")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference, to check the sliced table code.
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn crc32c_matches_bitwise_for_all_lengths() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..64 {
            assert_eq!(crc32c(&data[..n]), crc32c_bitwise(&data[..n]), "len {n}");
        }
        assert_eq!(crc32c(&data), crc32c_bitwise(&data));
    }

    #[test]
    fn round_trip_and_corruption() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"hello").unwrap();
        write_record(&mut buf, b"").unwrap();
        assert_eq!(buf.len(), 2 * 16 + 5);
        assert_eq!(&buf[..8], &5u64.to_le_bytes());
        let recs = read_records(&buf[..]).unwrap();
        assert_eq!(recs, vec![b"hello".to_vec(), Vec::new()]);

        for pos in [0, 9, 13, 17] {
            let mut bad = buf.clone();
            bad[pos] ^= 0x01;
            // 0: length byte, 9: length CRC, 13: data byte, 17: data CRC.
            let err = read_records(&bad[..]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "pos {pos}: {err}");
        }
        let err = read_records(&buf[..buf.len() - 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
