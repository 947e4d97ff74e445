//! A file of the package as its content: chunks concatenated and gzip
//! decompressed while streaming.
//!
//! Chunked files (`ovf:chunkSize`) are stored as `href.000000000`,
//! `href.000000001`, ... . In a tar the chunks must follow one another in
//! order: the reader cannot go back, and keeping chunks aside would mean a
//! temporary copy of a disk. A chunk out of order, a gap, or a chunk
//! arriving after the file was read to its end is an error naming the
//! chunk found and the one expected. The file ends at the first member
//! that is not its next chunk (or at the end of the package); that member
//! is handed out by the next [`PackageReader::next_member`] call.

use std::io::{self, Read};

use flate2::read::MultiGzDecoder;

use super::error::{PackageError, Result};
use super::path::{chunk_name, split_chunk_name};
use super::reader::PackageReader;

/// How a file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as is.
    #[default]
    Identity,
    /// gzip (RFC 1952), `ovf:compression="gzip"`.
    Gzip,
}

/// Reads a file's content starting at the current member.
#[derive(Debug)]
pub struct FileReader<'a> {
    inner: Inner<'a>,
    name: String,
}

#[derive(Debug)]
enum Inner<'a> {
    Plain(ChunkReader<'a>),
    Gzip(Box<MultiGzDecoder<ChunkReader<'a>>>),
}

impl PackageReader {
    /// A reader of the file whose (first) member is the current one.
    /// `chunked` says the descriptor gave an `ovf:chunkSize`: the current
    /// member must then be chunk 0 (`href.000000000`).
    pub fn open_file(&mut self, compression: Compression, chunked: bool) -> Result<FileReader<'_>> {
        let index = self
            .current_index()
            .ok_or(PackageError::Usage("open_file() without a current member"))?;
        let member = self.member(index);
        if member.role.is_metadata() {
            return Err(PackageError::Usage("open_file() on a metadata member"));
        }
        let name = member.name.clone();
        let base = if chunked {
            match split_chunk_name(&name) {
                Some((base, 0)) => {
                    let early = self.members().iter().find_map(|m| {
                        split_chunk_name(&m.name).filter(|(b, n)| *b == base && *n > 0)
                    });
                    if let Some((_, n)) = early {
                        return Err(PackageError::Chunk {
                            href: base.to_string(),
                            reason: format!(
                                "chunk {n} came before chunk 0: chunks must follow each other in order"
                            ),
                        });
                    }
                    Some(base.to_string())
                }
                Some((base, n)) => {
                    return Err(PackageError::Chunk {
                        href: base.to_string(),
                        reason: format!(
                            "the first chunk found is {name:?} (chunk {n}), not chunk 0"
                        ),
                    });
                }
                None => {
                    return Err(PackageError::Chunk {
                        href: name.clone(),
                        reason: "file is declared chunked but the member has no chunk suffix"
                            .into(),
                    });
                }
            }
        } else {
            None
        };
        let chunks = ChunkReader {
            pkg: self,
            base,
            index: 0,
            done: false,
        };
        let inner = match compression {
            Compression::Identity => Inner::Plain(chunks),
            Compression::Gzip => Inner::Gzip(Box::new(MultiGzDecoder::new(chunks))),
        };
        Ok(FileReader { inner, name })
    }
}

impl FileReader<'_> {
    /// Number of chunks read so far (1 for a file that is not chunked).
    pub fn chunks_read(&self) -> u32 {
        let c = match &self.inner {
            Inner::Plain(c) => c,
            Inner::Gzip(g) => g.get_ref(),
        };
        c.index + 1
    }
}

impl FileReader<'_> {
    /// Reads (and discards) the rest of the file, through every remaining
    /// chunk and to the end of the gzip stream (checking its CRC), so that
    /// the package moves past the whole file. Returns the bytes discarded.
    /// Call it when the consumer stopped early, e.g. a VMDK reader at its
    /// end-of-stream marker.
    pub fn drain(&mut self) -> Result<u64> {
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PackageError::from_io(e, "reading", self.name.as_ref())),
            }
        }
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(c) => c.read(buf),
            Inner::Gzip(g) => g.read(buf).map_err(|e| {
                if e.get_ref().is_some_and(|i| i.is::<PackageError>()) {
                    e
                } else {
                    PackageError::Gzip {
                        name: self.name.clone(),
                        source: e,
                    }
                    .into_io()
                }
            }),
        }
    }
}

#[derive(Debug)]
struct ChunkReader<'a> {
    pkg: &'a mut PackageReader,
    base: Option<String>,
    index: u32,
    done: bool,
}

impl ChunkReader<'_> {
    fn next_chunk(&mut self) -> Result<bool> {
        let Some(base) = self.base.clone() else {
            return Ok(false);
        };
        let next = self
            .index
            .checked_add(1)
            .ok_or_else(|| PackageError::Chunk {
                href: base.clone(),
                reason: "too many chunks".into(),
            })?;
        let found = self.pkg.advance()?;
        let Some(index) = found else {
            self.pkg.finish_chunks(&base, self.index);
            return Ok(false);
        };
        let name = self.pkg.member(index).name.clone();
        if name == chunk_name(&base, next) {
            self.index = next;
            return Ok(true);
        }
        if let Some((b, n)) = split_chunk_name(&name)
            && b == base
        {
            return Err(PackageError::Chunk {
                href: base,
                reason: format!(
                    "found chunk {n} after chunk {}: chunks must follow each other in order",
                    self.index
                ),
            });
        }
        self.pkg.finish_chunks(&base, self.index);
        self.pkg.set_pending(index);
        Ok(false)
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.done {
            let n = self.pkg.read_current(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if !self.next_chunk().map_err(PackageError::into_io)? {
                self.done = true;
            }
        }
        Ok(0)
    }
}
