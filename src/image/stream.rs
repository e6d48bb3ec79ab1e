//! Moving a volume file's bytes in and out in chunks: the engine side of `vol-upload`,
//! `vol-download` and of the daemon's streams.
//!
//! Owns: [`VolumeReader`], which hands out the bytes of `[offset, offset + length)` of a file
//! as data chunks of at most a given size and, when sparse, as holes (SEEK_DATA/SEEK_HOLE);
//! and [`VolumeWriter`], which writes data chunks and holes (punched, so they read as zeros)
//! at a position that only moves forward. These are file bytes, as in libvirt, not guest
//! data. Must not: know about pools, names or the wire.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::Error;

/// One piece of a volume stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// `n` bytes of data, now at the start of the caller's buffer.
    Data(usize),
    /// `n` bytes that read as zeros and are not stored.
    Hole(u64),
    /// Nothing more.
    End,
}

/// Reads a file's bytes in chunks.
#[derive(Debug)]
pub struct VolumeReader {
    file: File,
    pos: u64,
    end: u64,
    sparse: bool,
}

impl VolumeReader {
    /// Reads `[offset, offset + length)` of `file` (length 0: to the end of the file).
    /// A range past the end stops at the end: an offset past it reads nothing, as libvirt's
    /// streams read.
    pub fn new(file: File, offset: u64, length: u64, sparse: bool) -> Result<Self, Error> {
        let size = file.metadata().map_err(Error::ReadingImage)?.len();
        let end = if length == 0 {
            size
        } else {
            offset.saturating_add(length).min(size)
        }
        .max(offset);
        Ok(VolumeReader {
            file,
            pos: offset,
            end,
            sparse,
        })
    }

    /// Bytes left to hand out.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// The next chunk: data copied into `buf` (at most `buf.len()` bytes), a hole (only when
    /// sparse), or the end.
    pub fn next_chunk(&mut self, buf: &mut [u8]) -> Result<Chunk, Error> {
        if self.pos >= self.end {
            return Ok(Chunk::End);
        }
        let mut limit = self.end;
        if self.sparse {
            let (is_data, until) = crate::sys::extent_at(&self.file, self.pos, self.end)
                .map_err(Error::ReadingImage)?;
            if !is_data {
                let len = until.min(self.end) - self.pos;
                self.pos += len;
                return Ok(Chunk::Hole(len));
            }
            limit = until.min(self.end);
        }
        let n = usize::try_from(limit - self.pos).map_or(buf.len(), |l| l.min(buf.len()));
        self.file
            .read_exact_at(&mut buf[..n], self.pos)
            .map_err(Error::ReadingImage)?;
        self.pos += n as u64;
        Ok(Chunk::Data(n))
    }
}

impl VolumeReader {
    /// Copies the remaining bytes into `dst` from `dst_offset` on, in the kernel
    /// (`copy_file_range`); when sparse, holes are skipped and `dst` is only extended over
    /// them. `progress` hears the bytes of each piece copied. Returns the number of bytes
    /// `dst` now reaches.
    pub fn copy_to(
        mut self,
        dst: &File,
        dst_offset: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, Error> {
        let start = self.pos;
        let writing = |offset: u64| move |source| Error::WritingMetadata { offset, source };
        while self.pos < self.end {
            let until = if self.sparse {
                let (is_data, until) = crate::sys::extent_at(&self.file, self.pos, self.end)
                    .map_err(Error::ReadingImage)?;
                let until = until.min(self.end);
                if !is_data {
                    self.pos = until;
                    continue;
                }
                until
            } else {
                self.end
            };
            let at = dst_offset + (self.pos - start);
            crate::sys::copy_span(
                &self.file,
                dst,
                crate::sys::Span {
                    from: self.pos,
                    to: at,
                    len: until - self.pos,
                },
                progress,
            )
            .map_err(writing(at))?;
            self.pos = until;
        }
        let reach = dst_offset + (self.end - start);
        dst.set_len(reach)
            .map_err(|source| Error::SettingLength { len: reach, source })?;
        Ok(reach)
    }
}

/// Writes bytes into a file from a position onwards.
#[derive(Debug)]
pub struct VolumeWriter {
    file: File,
    pos: u64,
    end: Option<u64>,
}

impl VolumeWriter {
    /// Writes into `file` from `offset` on, at most `length` bytes (0: no limit). An offset
    /// past the end of the file extends it, as libvirt's streams write.
    pub fn new(file: File, offset: u64, length: u64) -> Result<Self, Error> {
        if offset > i64::MAX as u64 {
            return Err(Error::OutOfRange {
                offset,
                size: i64::MAX as u64,
            });
        }
        Ok(VolumeWriter {
            file,
            pos: offset,
            end: (length != 0).then(|| offset.saturating_add(length)),
        })
    }

    fn room(&self, len: u64) -> Result<(), Error> {
        match self.end {
            Some(end) if self.pos.saturating_add(len) > end => Err(Error::OutOfRange {
                offset: self.pos.saturating_add(len),
                size: end,
            }),
            _ => Ok(()),
        }
    }

    /// Writes a data chunk at the current position.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), Error> {
        self.room(data.len() as u64)?;
        self.file
            .write_all_at(data, self.pos)
            .map_err(|source| Error::WritingMetadata {
                offset: self.pos,
                source,
            })?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Skips `len` bytes that must read as zeros: the range is punched (or written with
    /// zeros where punching is unsupported) and the file extended when it ends earlier.
    pub fn write_hole(&mut self, len: u64) -> Result<(), Error> {
        self.room(len)?;
        if self
            .pos
            .checked_add(len)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(Error::OutOfRange {
                offset: self.pos,
                size: i64::MAX as u64,
            });
        }
        let size = self.file.metadata().map_err(Error::ReadingImage)?.len();
        let inside = size.saturating_sub(self.pos).min(len);
        if inside > 0 && crate::sys::punch_hole(&self.file, self.pos, inside).is_err() {
            super::file::write_zeroes_buffered(&self.file, self.pos, inside, &mut |_| {}).map_err(
                |source| Error::WritingZeroes {
                    offset: self.pos,
                    len: inside,
                    source,
                },
            )?;
        }
        self.pos += len;
        if self.pos > size {
            self.file
                .set_len(self.pos)
                .map_err(|source| Error::SettingLength {
                    len: self.pos,
                    source,
                })?;
        }
        Ok(())
    }

    /// Bytes written or skipped so far, counted from the start offset.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Syncs the file.
    pub fn finish(self) -> Result<(), Error> {
        self.file.sync_all().map_err(Error::Syncing)
    }
}
