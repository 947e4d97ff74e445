//! The state of one import: what became of each package file as the
//! package streamed by, and the work left once the descriptor and every
//! file are known: delta disks over their parents, blank disks, grown
//! capacities.
//!
//! A delta disk's file is converted over its parent's image as it streams
//! by when that image is already written. When it comes first, its bytes
//! are spooled to a temporary file in the output directory (as many bytes
//! as the member holds, nothing sized from the descriptor) and converted
//! once the parent is done. A file converted before the descriptor was
//! read is converted alone; if it turns out to be a delta disk, it is
//! rewritten over its parent from what it defines.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use vhd::DiskImage;

use super::child::{ParentImage, Target, disk_err, open_output, overlay};
use super::disk::{self, Converted, Location};
use super::outputs::Outputs;
use super::plan::FilePlan;
use super::report::ImportedDisk;
use super::{ImportError, ImportOptions, Result, format_agrees, join};
use crate::descriptor::{ApplianceDescription, DiskFormat, DiskIndex};
use crate::package::{self, PackageReader};

/// A converted file.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    /// Its output's name.
    pub name: String,
    /// What the conversion found and did.
    pub converted: Converted,
    /// The images the output reads through, nearest first.
    pub backing: Vec<String>,
}

/// What became of a package file.
#[derive(Debug)]
pub(crate) enum FileState {
    /// Converted into its final output.
    Done(Written),
    /// Converted alone before the descriptor was read.
    Alone(Written),
    /// A delta disk's bytes, waiting for its parent.
    Spooled {
        /// The output name it will get.
        name: String,
        /// The spool file.
        path: PathBuf,
        /// Bytes spooled.
        len: u64,
    },
}

/// One import in progress.
pub(crate) struct Session<'a> {
    pub options: &'a ImportOptions,
    pub outputs: Outputs,
    pub ext: &'static str,
    /// Package files by full member name (chunk suffix removed).
    pub files: BTreeMap<String, FileState>,
    pub warnings: Vec<String>,
    pub progress: Option<&'a dyn Fn(&str)>,
}

fn io_err(href: &str, source: io::Error) -> ImportError {
    ImportError::Read {
        href: href.to_string(),
        source,
    }
}

/// Grows the image at `path` to `size` bytes.
fn grow(path: &Path, format: vhd::Format, size: u64, href: &str) -> Result<()> {
    let img = open_output(path, format, false).map_err(|e| disk_err(href, e))?;
    img.resize(size)
        .and_then(|()| img.flush())
        .map_err(|e| disk_err(href, e))
}

impl Session<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.options.out_dir.join(name)
    }

    fn tell(&self, name: &str) {
        if let Some(p) = self.progress {
            p(name);
        }
    }

    /// Handles the package file now current in `reader` (its chunk suffix
    /// removed: `base`). `known` holds the descriptor's appliance and file
    /// plans once the descriptor has been read.
    pub(crate) fn on_file(
        &mut self,
        reader: &mut PackageReader,
        base: String,
        chunked: bool,
        size: u64,
        known: Option<(&ApplianceDescription, &BTreeMap<String, FilePlan>)>,
    ) -> Result<()> {
        let plan = known.and_then(|(_, plans)| plans.get(&base)).cloned();
        let iso =
            plan.as_ref().is_some_and(|p| p.iso) || base.to_ascii_lowercase().ends_with(".iso");
        let name = self
            .outputs
            .name_for(&base, if iso { "iso" } else { self.ext });
        let dest = self.outputs.track(&name);
        let parent = match (&plan, known) {
            (
                Some(FilePlan {
                    parent: Some(p), ..
                }),
                Some((app, _)),
            ) => match self.ready_parent(app, reader, *p) {
                Some(img) => Some(img),
                None => return self.spool(reader, base, name, chunked),
            },
            _ => None,
        };
        self.tell(&base);
        let window = if chunked {
            None
        } else {
            reader.current_location().map(|(path, offset)| Location {
                path,
                offset,
                len: size,
            })
        };
        let target = Target {
            dest: &dest,
            format: self.options.disk_format,
            parent: parent.as_ref(),
            capacity: plan.as_ref().and_then(|p| p.capacity),
        };
        let mut file = reader.open_file(package::Compression::Identity, chunked)?;
        let converted = disk::convert_file(&base, &mut file, window, iso, &target)?;
        file.drain()?;
        let mut written = Written {
            name,
            converted,
            backing: backing_of(parent.as_ref(), self.options.disk_format),
        };
        let state = match &plan {
            Some(p) => {
                if parent.is_none() && !iso {
                    self.grow_root(&mut written, p.capacity, &base)?;
                }
                FileState::Done(written)
            }
            None => FileState::Alone(written),
        };
        self.files.insert(base, state);
        Ok(())
    }

    /// Grows a disk standing alone to `capacity` when that is larger.
    fn grow_root(&self, w: &mut Written, capacity: Option<u64>, href: &str) -> Result<()> {
        if let Some(cap) = capacity.filter(|&c| c > w.converted.virtual_size) {
            grow(&self.path(&w.name), self.options.disk_format, cap, href)?;
            w.converted.virtual_size = cap;
        }
        Ok(())
    }

    /// The image of disk `p` if it is already final.
    fn ready_parent(
        &self,
        app: &ApplianceDescription,
        reader: &PackageReader,
        p: DiskIndex,
    ) -> Option<ParentImage> {
        let f = app.disk_file(p)?;
        let href = package::normalize_href(&f.href).ok()?;
        match self.files.get(&reader.full_name(&href))? {
            FileState::Done(w) => Some(self.image_of(w)),
            _ => None,
        }
    }

    fn image_of(&self, w: &Written) -> ParentImage {
        let mut chain = vec![w.name.clone()];
        chain.extend(w.backing.iter().cloned());
        ParentImage {
            path: self.path(&w.name),
            size: w.converted.virtual_size,
            chain,
        }
    }

    /// Copies the current file's bytes to a spool file, to convert once
    /// its parent is done.
    fn spool(
        &mut self,
        reader: &mut PackageReader,
        base: String,
        name: String,
        chunked: bool,
    ) -> Result<()> {
        let path = self.outputs.temporary("spool");
        let mut out = std::fs::File::create_new(&path).map_err(|e| io_err(&base, e))?;
        let mut file = reader.open_file(package::Compression::Identity, chunked)?;
        let len = io::copy(&mut file, &mut out).map_err(|e| io_err(&base, e))?;
        file.drain()?;
        self.files
            .insert(base, FileState::Spooled { name, path, len });
        Ok(())
    }

    /// Settles every DiskSection disk, parents before children: converts
    /// spooled delta disks, rewrites delta disks converted alone, grows
    /// disks to their capacities and creates blank disks. Returns the
    /// imported disks (in DiskSection order) and the files they use.
    pub(crate) fn finish_disks(
        &mut self,
        app: &ApplianceDescription,
        plans: &BTreeMap<String, FilePlan>,
        root: &str,
    ) -> Result<(Vec<ImportedDisk>, HashSet<String>)> {
        let mut images: Vec<ParentImage> = Vec::with_capacity(app.disks.len());
        let mut disks = Vec::new();
        let mut used = HashSet::new();
        for (i, d) in app.disks.iter().enumerate() {
            let disk_id = d.disk_id.clone();
            let parent = match d.parent {
                None => None,
                Some(p) => Some(images.get(p.0).cloned().ok_or_else(|| {
                    ImportError::Unsupported(format!("disk {disk_id} is listed before its parent"))
                })?),
            };
            let parent_id = d
                .parent
                .and_then(|p| app.disks.get(p.0))
                .map(|p| p.disk_id.clone());
            let cap = d.capacity_bytes;
            let imported = match d.file.and_then(|f| app.files.get(f.0)) {
                Some(f) => {
                    let full = join(root, &f.href)?;
                    // A file several disks share is grown once, to the
                    // largest of their capacities.
                    let file_cap = plans.get(&full).and_then(|p| p.capacity).unwrap_or(cap);
                    let w =
                        self.settle_file(&full, &disk_id, &f.href, parent.as_ref(), file_cap)?;
                    if d.format != DiskFormat::Iso && cap < w.converted.virtual_size {
                        self.warnings.push(format!(
                            "disk {disk_id}: the descriptor's capacity of {cap} bytes is smaller than the {} bytes {} holds{}; the disk keeps its full size",
                            w.converted.virtual_size,
                            f.href,
                            if parent.is_some() { " over its parent" } else { "" }
                        ));
                    }
                    let found = Some(w.converted.format);
                    if !matches!(d.format, DiskFormat::Unspecified | DiskFormat::Unknown(_))
                        && !format_agrees(&d.format, found)
                    {
                        self.warnings.push(format!(
                            "disk {disk_id}: the descriptor says {:?} but {} holds {:?}",
                            d.format, f.href, found
                        ));
                    }
                    let imported = imported_disk(Some(full.clone()), &w);
                    used.insert(full);
                    imported
                }
                None => self.blank(&disk_id, cap, parent.as_ref())?,
            };
            images.push(ParentImage {
                path: self.path(&imported.output),
                size: imported.virtual_size,
                chain: std::iter::once(imported.output.clone())
                    .chain(imported.backing.iter().cloned())
                    .collect(),
            });
            debug_assert_eq!(images.len(), i + 1);
            disks.push(ImportedDisk {
                disk_id: Some(disk_id),
                parent: parent_id,
                ..imported
            });
        }
        Ok((disks, used))
    }

    /// Makes the file `full` final for a disk (over `parent` for a delta
    /// disk) and returns what it became.
    fn settle_file(
        &mut self,
        full: &str,
        disk_id: &str,
        href: &str,
        parent: Option<&ParentImage>,
        capacity: u64,
    ) -> Result<Written> {
        let missing = || ImportError::MissingFile {
            disk_id: disk_id.to_string(),
            href: href.to_string(),
        };
        let state = self.files.remove(full).ok_or_else(missing)?;
        let written = match (state, parent) {
            (FileState::Done(w), Some(_)) => w,
            (FileState::Done(mut w) | FileState::Alone(mut w), None) => {
                if w.converted.format != disk::SourceFormat::Iso {
                    self.grow_root(&mut w, Some(capacity), href)?;
                }
                w
            }
            (FileState::Alone(w), Some(_)) if w.converted.format == disk::SourceFormat::Iso => {
                return Err(ImportError::Unsupported(format!(
                    "{href} is CD/DVD media and the delta disk {disk_id}"
                )));
            }
            (FileState::Alone(w), Some(p)) => self.rebuild(w, href, p, capacity)?,
            (FileState::Spooled { name, path, len }, Some(p)) => {
                self.tell(full);
                let dest = self.path(&name);
                let target = Target {
                    dest: &dest,
                    format: self.options.disk_format,
                    parent: Some(p),
                    capacity: Some(capacity),
                };
                let file = std::fs::File::open(&path).map_err(|e| io_err(href, e))?;
                let window = Location {
                    path: path.clone(),
                    offset: 0,
                    len,
                };
                let converted = disk::convert_file(
                    full,
                    BufReader::with_capacity(1 << 20, file),
                    Some(window),
                    false,
                    &target,
                )?;
                std::fs::remove_file(&path).map_err(|e| io_err(href, e))?;
                Written {
                    name,
                    converted,
                    backing: backing_of(Some(p), self.options.disk_format),
                }
            }
            (FileState::Spooled { .. }, None) => {
                return Err(ImportError::Unsupported(format!(
                    "{href} was held back as a delta disk but disk {disk_id} uses it alone"
                )));
            }
        };
        self.files
            .insert(full.to_string(), FileState::Done(written.clone()));
        Ok(written)
    }

    /// Rewrites a file converted alone as a delta disk over `parent`: what
    /// it defines laid over the parent, then put in its place.
    fn rebuild(
        &mut self,
        w: Written,
        href: &str,
        parent: &ParentImage,
        capacity: u64,
    ) -> Result<Written> {
        let format = self.options.disk_format;
        let path = self.path(&w.name);
        let tmp = self.outputs.temporary("rebuild");
        {
            let src = open_output(&path, format, true).map_err(|e| disk_err(href, e))?;
            let size = src.virtual_size();
            let whole = w.converted.covered.first().is_some_and(|r| r.start == 0)
                && w.converted.covered.len() == 1;
            let covered_prefix = if whole {
                w.converted.covered.first().map_or(0, |r| r.end)
            } else {
                0
            };
            let target = Target {
                dest: &tmp,
                format,
                parent: Some(parent),
                capacity: Some(capacity),
            };
            let out =
                target.create(href, size, covered_prefix, Some(src.physical_sector_size()))?;
            overlay(href, &src, &out, &w.converted.covered)?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| io_err(href, e))?;
        let out = open_output(&path, format, true).map_err(|e| disk_err(href, e))?;
        Ok(Written {
            name: w.name,
            converted: Converted {
                virtual_size: out.virtual_size(),
                ..w.converted
            },
            backing: backing_of(Some(parent), format),
        })
    }

    /// A disk without a file: blank, or an empty delta over its parent.
    fn blank(
        &mut self,
        disk_id: &str,
        capacity: u64,
        parent: Option<&ParentImage>,
    ) -> Result<ImportedDisk> {
        let name = self.outputs.name_for(disk_id, self.ext);
        let dest = self.outputs.track(&name);
        let target = Target {
            dest: &dest,
            format: self.options.disk_format,
            parent,
            capacity: Some(capacity),
        };
        let img = target.create(&name, capacity, 0, None)?;
        img.flush().map_err(|e| disk_err(&name, e))?;
        Ok(ImportedDisk {
            href: None,
            disk_id: Some(disk_id.to_string()),
            output: name,
            source_format: None,
            gzip: false,
            virtual_size: img.virtual_size(),
            bytes_written: 0,
            parent: None,
            backing: backing_of(parent, self.options.disk_format),
        })
    }
}

/// What an image over `parent` reads through (nothing when flattened).
fn backing_of(parent: Option<&ParentImage>, format: vhd::Format) -> Vec<String> {
    match parent {
        Some(p) if format != vhd::Format::Raw => p.chain.clone(),
        _ => Vec::new(),
    }
}

/// The imported-disk record of a converted file.
pub(crate) fn imported_disk(href: Option<String>, w: &Written) -> ImportedDisk {
    ImportedDisk {
        href,
        disk_id: None,
        output: w.name.clone(),
        source_format: Some(w.converted.format),
        gzip: w.converted.gzip,
        virtual_size: w.converted.virtual_size,
        bytes_written: w.converted.bytes_written,
        parent: None,
        backing: w.backing.clone(),
    }
}
