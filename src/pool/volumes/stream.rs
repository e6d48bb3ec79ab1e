//! A volume's bytes in and out: `vol-upload` and `vol-download`, over a stream or between a
//! volume and a local file.
//!
//! Owns: [`Download`] and [`Upload`] (their chunks, holes, the hooks run when an upload
//! finishes or closes), the ranges they cover, and their errors in pool terms; a download
//! reads under the reader's lock, an upload writes under the writer's lock and is refused
//! for an image qpool may not write.
//! Must not: lock or open a volume any other way than its parent's open (`Access`),
//! or move bytes itself (that is `image::stream`).

use std::fs::File;
use std::path::Path;

use super::{Access, WhenInUse};
use crate::image::{self, Chunk, VolumeReader, VolumeWriter};
use crate::pool::{Error, Pool};

/// A volume's bytes going out (`vol-download`).
#[derive(Debug)]
pub struct Download {
    reader: VolumeReader,
    name: String,
}

impl Download {
    /// The next chunk: data copied into `buf`, a hole (sparse downloads only), or the end.
    pub fn next_chunk(&mut self, buf: &mut [u8]) -> Result<Chunk, Error> {
        self.reader
            .next_chunk(buf)
            .map_err(|source| Error::Streaming {
                name: self.name.clone(),
                source,
            })
    }
}

/// Bytes coming into a volume (`vol-upload`).
#[derive(Debug)]
pub struct Upload {
    writer: VolumeWriter,
    name: String,
    on_finish: Option<FinishHook>,
    closed: OnClose,
}

/// What runs once an upload has finished well.
struct FinishHook(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for FinishHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinishHook")
    }
}

/// A function run once, when the upload it belongs to is over (finished, failed or
/// dropped).
#[derive(Default)]
struct OnClose(Option<Box<dyn FnOnce() + Send>>);

impl std::fmt::Debug for OnClose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OnClose(set)"
        } else {
            "OnClose"
        })
    }
}

impl Drop for OnClose {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl Upload {
    fn streaming(&self) -> impl FnOnce(image::Error) -> Error + '_ {
        |source| Error::Streaming {
            name: self.name.clone(),
            source,
        }
    }

    /// Writes a data chunk at the current position.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), Error> {
        let result = self.writer.write_data(data);
        result.map_err(self.streaming())
    }

    /// Skips `len` bytes that must read as zeros.
    pub fn write_hole(&mut self, len: u64) -> Result<(), Error> {
        let result = self.writer.write_hole(len);
        result.map_err(self.streaming())
    }

    /// Sets what runs after a successful [`finish`](Self::finish) (a daemon tells its
    /// mirrors that the volume changed).
    pub fn on_finish(mut self, hook: Box<dyn FnOnce() + Send>) -> Self {
        self.on_finish = Some(FinishHook(hook));
        self
    }

    /// Syncs what was written.
    pub fn finish(self) -> Result<(), Error> {
        let Upload {
            writer,
            name,
            on_finish,
            closed,
        } = self;
        let result = writer
            .finish()
            .map_err(|source| Error::Streaming { name, source });
        if result.is_ok()
            && let Some(FinishHook(hook)) = on_finish
        {
            hook();
        }
        drop(closed);
        result
    }

    /// Runs `f` once the upload is over, however it ends (libvirt refreshes the pool then).
    pub fn on_close(mut self, f: impl FnOnce() + Send + 'static) -> Upload {
        self.closed = OnClose(Some(Box::new(f)));
        self
    }
}

impl Pool {
    /// Opens a volume's file bytes for `vol-download`: `[offset, offset + length)`, length 0
    /// meaning to the end; `sparse` reports holes instead of zeros.
    pub fn download(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        sparse: bool,
    ) -> Result<Download, Error> {
        let (file, _) = self.open_volume(name, Access::Read)?;
        let reader =
            VolumeReader::new(file, offset, length, sparse).map_err(|source| Error::Streaming {
                name: name.to_string(),
                source,
            })?;
        Ok(Download {
            reader,
            name: name.to_string(),
        })
    }

    /// Opens a volume's file for `vol-upload` at `offset`, at most `length` bytes (0: no
    /// limit). A volume someone holds is refused unless forced ([`WhenInUse`]).
    pub fn upload(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        when: WhenInUse,
    ) -> Result<Upload, Error> {
        let (file, info) = self.open_volume(name, Access::Write(when))?;
        image::check_writable(&file, &info.image).map_err(|source| Error::Streaming {
            name: name.to_string(),
            source,
        })?;
        let writer =
            VolumeWriter::new(file, offset, length).map_err(|source| Error::Streaming {
                name: name.to_string(),
                source,
            })?;
        Ok(Upload {
            writer,
            name: name.to_string(),
            on_finish: None,
            closed: OnClose::default(),
        })
    }

    /// `vol-download` into a local file: the bytes move in the kernel; with `sparse` the
    /// volume's holes stay holes in `local`.
    pub fn download_to_file(
        &self,
        name: &str,
        local: &File,
        local_path: &Path,
        offset: u64,
        length: u64,
        sparse: bool,
    ) -> Result<(), Error> {
        let download = self.download(name, offset, length, sparse)?;
        let _watch = self.watch(&format!("downloading {name}"), download.reader.remaining());
        let writing = self.writing();
        download
            .reader
            .copy_to(local, 0, &mut |n| writing.advance(n))
            .map_err(|source| Error::Streaming {
                name: name.to_string(),
                source,
            })?;
        local.sync_all().map_err(|e| Error::LocalFile {
            path: local_path.to_path_buf(),
            writing: true,
            source: image::Error::Syncing(e),
        })
    }

    /// `vol-upload` from a local file: `length` bytes of it (0: all) into the volume at
    /// `offset`; with `sparse` the file's holes are punched into the volume.
    #[allow(clippy::too_many_arguments)]
    pub fn upload_from_file(
        &self,
        name: &str,
        local: File,
        local_path: &Path,
        offset: u64,
        length: u64,
        sparse: bool,
        when: WhenInUse,
    ) -> Result<(), Error> {
        /// Size of the chunks moved between two local files.
        const CHUNK: usize = 4 << 20;
        let local_error = |source| Error::LocalFile {
            path: local_path.to_path_buf(),
            writing: false,
            source,
        };
        let mut upload = self.upload(name, offset, length, when)?;
        let mut reader = VolumeReader::new(local, 0, length, sparse).map_err(local_error)?;
        let _watch = self.watch(&format!("uploading to {name}"), reader.remaining());
        let writing = self.writing();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.next_chunk(&mut buf).map_err(local_error)? {
                Chunk::Data(n) => {
                    upload.write_data(&buf[..n])?;
                    writing.advance(n as u64);
                }
                Chunk::Hole(n) => {
                    upload.write_hole(n)?;
                    writing.advance(n);
                }
                Chunk::End => break,
            }
        }
        upload.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CreateFlags;
    use crate::xml::VolumeDef;

    use crate::pool::temp_pool as pool;

    #[test]
    fn upload_then_download_move_the_files_bytes() {
        let (dir, pool) = pool();
        let mut def = VolumeDef::new("u.img", 8192);
        def.allocation = Some(0);
        pool.create_volume(&def, CreateFlags::default(), None)
            .unwrap();
        let src = dir.path().join(".src");
        std::fs::write(&src, vec![7u8; 4096]).unwrap();
        pool.upload_from_file(
            "u.img",
            File::open(&src).unwrap(),
            &src,
            4096,
            0,
            false,
            WhenInUse::Refuse,
        )
        .unwrap();
        let out = dir.path().join(".out");
        let local = File::create(&out).unwrap();
        pool.download_to_file("u.img", &local, &out, 4096, 0, false)
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 4096]);
    }
}
