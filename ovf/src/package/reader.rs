//! [`PackageReader`]: the members of an OVA (tar) or a directory package,
//! one at a time, hashed while they are read.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::digest::{DigestSet, Digests, Hashers};
use super::dir::DirSource;
use super::error::{PackageError, Result};
use super::manifest::Manifest;
use super::path::{join_root, normalize_member_name, split_chunk_name};
use super::tar::{EntryKind, TarReader};

/// Default cap on the size of a descriptor, manifest or certificate.
pub const DEFAULT_METADATA_LIMIT: u64 = 16 << 20;
/// Default cap on the number of members.
pub const DEFAULT_MAX_MEMBERS: usize = 100_000;

/// How to read a package.
#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// Largest descriptor, manifest or certificate accepted (they are held
    /// in memory).
    pub metadata_limit: u64,
    /// Digests computed for members read before the manifest (whose
    /// algorithms are not known yet). Members after the manifest get
    /// exactly the algorithms it names for them.
    pub digests_before_manifest: DigestSet,
    /// Most members accepted.
    pub max_members: usize,
}

impl Default for PackageOptions {
    fn default() -> Self {
        PackageOptions {
            metadata_limit: DEFAULT_METADATA_LIMIT,
            digests_before_manifest: DigestSet::ALL,
            max_members: DEFAULT_MAX_MEMBERS,
        }
    }
}

/// What a member is to the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// The OVF descriptor (`*.ovf`); buffered in memory.
    Descriptor,
    /// The manifest (`*.mf`); buffered in memory.
    Manifest,
    /// The certificate (`*.cert`); buffered in memory.
    Certificate,
    /// Any other file (disks, ISO images, ...), streamed.
    File,
}

impl MemberRole {
    fn of(name: &str) -> MemberRole {
        let depth = name.matches('/').count();
        let lower = name.to_ascii_lowercase();
        if depth > 1 {
            MemberRole::File
        } else if lower.ends_with(".ovf") {
            MemberRole::Descriptor
        } else if lower.ends_with(".mf") {
            MemberRole::Manifest
        } else if lower.ends_with(".cert") {
            MemberRole::Certificate
        } else {
            MemberRole::File
        }
    }

    /// Whether members of this role are buffered in memory.
    pub fn is_metadata(self) -> bool {
        self != MemberRole::File
    }
}

/// A member as [`PackageReader::next_member`] hands it out.
#[derive(Debug, Clone)]
pub struct Member {
    /// The normalised full name in the package (`dir/disk.vmdk`).
    pub name: String,
    /// Size in bytes as stored (compressed size for gzip files).
    pub size: u64,
    /// What the member is.
    pub role: MemberRole,
    /// The contents, for metadata members.
    pub data: Option<Arc<[u8]>>,
}

/// What the reader knows about one member after reading it.
#[derive(Debug, Clone)]
pub struct MemberSummary {
    /// The normalised full name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// What it is.
    pub role: MemberRole,
    /// Digests over every byte of the member, computed while it was read
    /// (or skipped).
    pub digests: Digests,
    /// The contents, for metadata members.
    pub data: Option<Arc<[u8]>>,
}

enum Source {
    Tar(TarReader<Box<dyn Read + Send>>),
    Dir(DirSource),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Tar(t) => write!(f, "Tar(at {:#x})", t.position()),
            Source::Dir(d) => d.fmt(f),
        }
    }
}

#[derive(Debug)]
struct Current {
    index: usize,
    hashers: Option<Hashers>,
    read: u64,
}

/// Reads the members of a package in one forward pass.
///
/// ```no_run
/// # fn main() -> ovf::package::Result<()> {
/// use ovf::package::{PackageReader, MemberRole};
/// let mut pkg = PackageReader::open("app.ova".as_ref(), Default::default())?;
/// while let Some(member) = pkg.next_member()? {
///     if member.role == MemberRole::File {
///         std::io::copy(&mut pkg.body()?, &mut std::io::sink()).ok();
///     }
/// }
/// let contents = pkg.finish()?;
/// let report = ovf::package::verify(&contents, &Default::default())?;
/// # let _ = report; Ok(()) }
/// ```
#[derive(Debug)]
pub struct PackageReader {
    source: Source,
    path: PathBuf,
    options: PackageOptions,
    members: Vec<MemberSummary>,
    by_name: HashMap<String, usize>,
    current: Option<Current>,
    /// A member whose header was read on the caller's behalf (while
    /// following chunks) and not yet handed out.
    pending: Option<usize>,
    manifest: Option<(String, Manifest)>,
    manifest_error: Option<String>,
    /// Chunked files already read to their end: base name -> last index.
    finished_chunks: HashMap<String, u32>,
    root: Option<String>,
    ended: bool,
    /// The tar source reads a file at `path` from its start.
    from_file: bool,
}

impl PackageReader {
    /// Opens a package: a directory, a `.ovf` file (its directory is the
    /// package) or an OVA (tar) file.
    pub fn open(path: &Path, options: PackageOptions) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|source| PackageError::Io {
            op: "opening",
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            return Self::directory(path, None, options);
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(n) = name.filter(|n| n.to_ascii_lowercase().ends_with(".ovf")) {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            return Self::directory(dir.unwrap_or(Path::new(".")), Some(&n), options);
        }
        let file = std::fs::File::open(path).map_err(|source| PackageError::Io {
            op: "opening",
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = Self::ova(io::BufReader::with_capacity(1 << 20, file), options);
        reader.path = path.to_path_buf();
        reader.from_file = true;
        Ok(reader)
    }

    /// Reads an OVA (tar) from any stream.
    pub fn ova(stream: impl Read + Send + 'static, options: PackageOptions) -> Self {
        Self::with_source(
            Source::Tar(TarReader::new(Box::new(stream))),
            PathBuf::from("<ova stream>"),
            options,
        )
    }

    /// Reads a directory package rooted at `dir`; `descriptor` names its
    /// `.ovf` file, or `None` to use the only one there.
    pub fn directory(
        dir: &Path,
        descriptor: Option<&str>,
        options: PackageOptions,
    ) -> Result<Self> {
        let source = DirSource::new(dir, descriptor)?;
        let mut r = Self::with_source(Source::Dir(source), dir.to_path_buf(), options);
        r.root = Some(String::new());
        Ok(r)
    }

    fn with_source(source: Source, path: PathBuf, options: PackageOptions) -> Self {
        PackageReader {
            source,
            path,
            options,
            members: Vec::new(),
            by_name: HashMap::new(),
            current: None,
            pending: None,
            manifest: None,
            manifest_error: None,
            finished_chunks: HashMap::new(),
            root: None,
            ended: false,
            from_file: false,
        }
    }

    /// Whether this is a directory package.
    pub fn is_directory(&self) -> bool {
        matches!(self.source, Source::Dir(_))
    }

    /// The directory that holds the descriptor (or manifest), relative to
    /// the archive root: `""` at the top level, `"dir"` for `dir/x.ovf`.
    /// `None` until one of them has been seen. Hrefs resolve against it.
    pub fn root(&self) -> Option<&str> {
        self.root.as_deref()
    }

    /// The manifest, once read.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref().map(|(_, m)| m)
    }

    /// Members read so far.
    pub fn members(&self) -> &[MemberSummary] {
        &self.members
    }

    /// For directory packages: asks for files by name relative to the
    /// package root (hrefs from the descriptor; a chunked file's href
    /// brings all its chunks). Tar packages yield every member anyway, so
    /// this does nothing there.
    pub fn want<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        if let Source::Dir(d) = &mut self.source {
            for n in names {
                d.want(&normalize_member_name(n)?);
            }
        }
        Ok(())
    }

    /// The next member, after skipping (and hashing) what is left of the
    /// current one. Metadata members come with their contents. `None` at
    /// the end of the package.
    pub fn next_member(&mut self) -> Result<Option<Member>> {
        let index = match self.pending.take() {
            Some(i) => Some(i),
            None => self.advance()?,
        };
        Ok(index.map(|i| {
            let m = &self.members[i];
            Member {
                name: m.name.clone(),
                size: m.size,
                role: m.role,
                data: m.data.clone(),
            }
        }))
    }

    /// A reader of the current member's bytes (hashing them). For metadata
    /// members it reads the buffered contents.
    pub fn body(&mut self) -> Result<MemberBody<'_>> {
        let index = self
            .current
            .as_ref()
            .map(|c| c.index)
            .ok_or(PackageError::Usage("body() without a current member"))?;
        if self.pending.is_some() {
            return Err(PackageError::Usage(
                "body() before next_member() returned the member",
            ));
        }
        if let Some(data) = self.members[index].data.clone() {
            return Ok(MemberBody::Buffered(io::Cursor::new(data)));
        }
        Ok(MemberBody::Stream(self))
    }

    /// Drains every remaining member and returns what was read.
    pub fn finish(mut self) -> Result<PackageContents> {
        self.pending = None;
        while self.advance()?.is_some() {}
        let find = |role| {
            self.members
                .iter()
                .find(|m| m.role == role)
                .and_then(|m| m.data.clone().map(|d| (m.name.clone(), d)))
        };
        Ok(PackageContents {
            descriptor: find(MemberRole::Descriptor),
            manifest: find(MemberRole::Manifest),
            certificate: find(MemberRole::Certificate),
            root: self.root.clone().unwrap_or_default(),
            manifest_error: self.manifest_error.take(),
            members: self.members,
        })
    }

    /// Reads raw bytes of the current member (hashing them).
    pub(crate) fn read_current(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(cur) = &mut self.current else {
            return Ok(0);
        };
        let n = match &mut self.source {
            Source::Tar(t) => t.read(buf)?,
            Source::Dir(d) => d.read(buf)?,
        };
        cur.read += n as u64;
        if let Some(h) = &mut cur.hashers {
            h.update(&buf[..n]);
        }
        let member = &mut self.members[cur.index];
        if cur.read == member.size
            && let Some(h) = cur.hashers.take()
        {
            member.digests = h.finish();
        }
        Ok(n)
    }

    fn drain_current(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match self.read_current(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(PackageError::from_io(e, "reading", &self.path)),
            }
        }
        if let Some(cur) = self.current.take() {
            let m = &self.members[cur.index];
            if cur.read != m.size {
                return Err(PackageError::Truncated {
                    what: format!(
                        "member {:?} ended after {} of {} bytes",
                        m.name, cur.read, m.size
                    ),
                    offset: 0,
                });
            }
        }
        Ok(())
    }

    /// Moves to the next member, records it and buffers metadata. Returns
    /// its index in `members`.
    pub(crate) fn advance(&mut self) -> Result<Option<usize>> {
        if self.ended {
            return Ok(None);
        }
        if self.pending.is_some() {
            return Err(PackageError::Usage("advance() with a pending member"));
        }
        self.drain_current()?;
        let (name, size) = loop {
            match &mut self.source {
                Source::Tar(t) => {
                    let Some(entry) = t.next_entry()? else {
                        self.ended = true;
                        return Ok(None);
                    };
                    // `tar -cf x.ova .` starts with a `./` directory entry:
                    // the archive root itself, nothing to check or record.
                    if entry.kind == EntryKind::Directory
                        && entry.name.split('/').all(|c| c.is_empty() || c == ".")
                    {
                        continue;
                    }
                    let name = normalize_member_name(&entry.name)?;
                    match entry.kind {
                        EntryKind::File => break (name, entry.size),
                        EntryKind::Directory => continue,
                        other => {
                            return Err(PackageError::ForbiddenMember {
                                name,
                                kind: other.describe(),
                            });
                        }
                    }
                }
                Source::Dir(d) => match d.next()? {
                    Some(x) => break x,
                    None => {
                        self.ended = true;
                        return Ok(None);
                    }
                },
            }
        };
        self.record(name, size).map(Some)
    }

    fn record(&mut self, name: String, size: u64) -> Result<usize> {
        if self.by_name.contains_key(&name) {
            return Err(PackageError::Duplicate { name });
        }
        if self.members.len() >= self.options.max_members {
            return Err(PackageError::Layout {
                reason: format!("more than {} members", self.options.max_members),
            });
        }
        if let Some((base, idx)) = split_chunk_name(&name)
            && let Some(last) = self.finished_chunks.get(base)
        {
            return Err(PackageError::Chunk {
                href: base.to_string(),
                reason: format!(
                    "chunk {idx} comes after the file was read to its end at chunk {last}: \
                         chunks must follow each other in order"
                ),
            });
        }
        let role = MemberRole::of(&name);
        if role.is_metadata() {
            self.check_layout(&name, role)?;
        }
        let digests = match &self.manifest {
            Some((_, m)) => {
                let rel = self.relative_name(&name);
                rel.map_or(DigestSet::NONE, |r| m.algorithms_for(r))
            }
            None => self.options.digests_before_manifest,
        };
        let index = self.members.len();
        self.by_name.insert(name.clone(), index);
        self.members.push(MemberSummary {
            name,
            size,
            role,
            digests: Digests::default(),
            data: None,
        });
        self.current = Some(Current {
            index,
            hashers: Some(Hashers::new(digests)),
            read: 0,
        });
        if size == 0 {
            // Nothing to read: finish the digests now.
            let mut empty = [0u8; 0];
            self.read_current(&mut empty)
                .map_err(|e| PackageError::from_io(e, "reading", &self.path))?;
        }
        if role.is_metadata() {
            self.buffer_current(index)?;
        }
        Ok(index)
    }

    /// A member name relative to the package root (what hrefs and
    /// manifest entries name); `None` for members outside the root. Before
    /// the root is known, the name itself.
    pub fn relative_name<'a>(&self, name: &'a str) -> Option<&'a str> {
        match self.root.as_deref() {
            Some("") | None => Some(name),
            Some(root) => name.strip_prefix(root).and_then(|r| r.strip_prefix('/')),
        }
    }

    fn check_layout(&mut self, name: &str, role: MemberRole) -> Result<()> {
        let dir = name.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        match &self.root {
            Some(root) if *root != dir && !self.is_directory() => {
                return Err(PackageError::Layout {
                    reason: format!(
                        "{name:?} is not in the same directory as the other metadata files ({root:?})"
                    ),
                });
            }
            _ => self.root = Some(dir),
        }
        if let Some(other) = self
            .members
            .iter()
            .find(|m| m.role == role && m.name != name)
        {
            return Err(PackageError::Layout {
                reason: format!("two {role:?} files: {:?} and {name:?}", other.name),
            });
        }
        Ok(())
    }

    fn buffer_current(&mut self, index: usize) -> Result<()> {
        let size = self.members[index].size;
        let name = self.members[index].name.clone();
        if size > self.options.metadata_limit {
            return Err(PackageError::TooLarge {
                name,
                limit: self.options.metadata_limit,
            });
        }
        // Grown as bytes arrive, so a header that lies about the size of a
        // truncated member costs no more memory than the bytes present.
        let mut data = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        while (data.len() as u64) < size {
            match self.read_current(&mut chunk) {
                Ok(0) => {
                    return Err(PackageError::Truncated {
                        what: format!("member {name:?}"),
                        offset: 0,
                    });
                }
                Ok(n) => data.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(PackageError::from_io(e, "reading", &self.path)),
            }
        }
        if self.members[index].role == MemberRole::Manifest {
            match Manifest::parse(&name, &data) {
                Ok(m) => {
                    if let Source::Dir(d) = &mut self.source {
                        for e in &m.entries {
                            d.want(&e.name);
                        }
                    }
                    self.manifest = Some((name, m));
                }
                Err(e) => self.manifest_error = Some(e.to_string()),
            }
        }
        self.members[index].data = Some(data.into());
        Ok(())
    }

    /// Marks a chunked file as read to its end at chunk `last`.
    pub(crate) fn finish_chunks(&mut self, base: &str, last: u32) {
        self.finished_chunks.insert(base.to_string(), last);
    }

    /// Hands a member read on the caller's behalf back to `next_member`.
    pub(crate) fn set_pending(&mut self, index: usize) {
        self.pending = Some(index);
    }

    /// The summary of member `index`.
    pub(crate) fn member(&self, index: usize) -> &MemberSummary {
        &self.members[index]
    }

    /// The index of the current member.
    pub(crate) fn current_index(&self) -> Option<usize> {
        self.current.as_ref().map(|c| c.index)
    }

    /// Where the current member's bytes can be read with random access: for
    /// an OVA opened from a file, that file and the byte offset of the
    /// member's data in it; for a directory package, the member's own file
    /// at offset 0. `None` for an OVA read from a stream.
    pub fn current_location(&self) -> Option<(PathBuf, u64)> {
        let cur = self.current.as_ref()?;
        let m = &self.members[cur.index];
        match &self.source {
            Source::Tar(t) if self.from_file => {
                let consumed = m.size.checked_sub(t.remaining())?;
                Some((self.path.clone(), t.position().checked_sub(consumed)?))
            }
            Source::Tar(_) => None,
            Source::Dir(_) => Some((self.path.join(&m.name), 0)),
        }
    }

    /// Joins the package root and a relative name.
    pub fn full_name(&self, relative: &str) -> String {
        join_root(self.root.as_deref().unwrap_or(""), relative)
    }
}

/// The bytes of the current member.
#[derive(Debug)]
pub enum MemberBody<'a> {
    /// Streamed from the package.
    Stream(&'a mut PackageReader),
    /// Buffered metadata.
    Buffered(io::Cursor<Arc<[u8]>>),
}

impl Read for MemberBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MemberBody::Stream(r) => r.read_current(buf),
            MemberBody::Buffered(c) => c.read(buf),
        }
    }
}

/// Everything read from a package, for verification.
#[derive(Debug, Clone)]
pub struct PackageContents {
    /// Every member, in package order, with its digests.
    pub members: Vec<MemberSummary>,
    /// The directory of the descriptor (`""` at the top level).
    pub root: String,
    /// The descriptor's name and contents.
    pub descriptor: Option<(String, Arc<[u8]>)>,
    /// The manifest's name and contents.
    pub manifest: Option<(String, Arc<[u8]>)>,
    /// The certificate's name and contents.
    pub certificate: Option<(String, Arc<[u8]>)>,
    /// Why the manifest could not be parsed, when it could not.
    pub manifest_error: Option<String>,
}
