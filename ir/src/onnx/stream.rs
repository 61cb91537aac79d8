//! A `BufMut` that writes through to a file in 64 KiB chunks, so that
//! encoding a model never holds the whole serialized model in memory.

use bytes::buf::UninitSlice;
use bytes::BufMut;
use std::io::Write;

const CHUNK: usize = 1 << 16;

pub(crate) struct StreamBuf<W: Write> {
    out: W,
    buf: Vec<u8>,
    pub(crate) error: Option<std::io::Error>,
    pub(crate) written: u64,
}

impl<W: Write> StreamBuf<W> {
    pub(crate) fn new(out: W) -> Self {
        StreamBuf {
            out,
            buf: Vec::with_capacity(CHUNK),
            error: None,
            written: 0,
        }
    }

    fn flush_buf(&mut self) {
        if self.error.is_none() && !self.buf.is_empty() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
    }

    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        self.flush_buf();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }
}

// SAFETY: `chunk_mut` hands out the vector's spare capacity, and
// `advance_mut` only extends the length over bytes the caller initialised.
unsafe impl<W: Write> BufMut for StreamBuf<W> {
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let len = self.buf.len() + cnt;
        assert!(len <= self.buf.capacity());
        unsafe { self.buf.set_len(len) };
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        UninitSlice::uninit(self.buf.spare_capacity_mut())
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= CHUNK {
            self.flush_buf();
            if self.error.is_none() {
                if let Err(e) = self.out.write_all(src) {
                    self.error = Some(e);
                }
            }
            self.written += src.len() as u64;
        } else {
            if self.buf.len() + src.len() > self.buf.capacity() {
                self.flush_buf();
            }
            self.buf.extend_from_slice(src);
        }
    }
}
