//! Planning from the descriptor, before anything is converted: what each
//! package file becomes (its capacity, whether it is CD media, which disk
//! it is a delta over), and the delta-disk chains (`ovf:parentRef`)
//! checked for depth and for files shared in contradictory ways.

use std::collections::BTreeMap;

use super::{ImportError, Result};
use crate::descriptor::{ApplianceDescription, Backing, DiskFormat, DiskIndex};
use crate::package;

/// Longest chain of delta disks accepted, counting the base disk: 32, the
/// snapshot depth VMware hosts allow, and half the differencing depth
/// `vhd::open` follows by default.
pub const MAX_CHAIN_DEPTH: usize = 32;

/// What the descriptor says about a file, once it is known.
#[derive(Debug, Clone, Default)]
pub(crate) struct FilePlan {
    /// The largest capacity of the disks that use it.
    pub capacity: Option<u64>,
    /// Kept as it is (CD/DVD media).
    pub iso: bool,
    /// The first disk that uses the file.
    pub disk: Option<DiskIndex>,
    /// For a delta disk's file: the disk it is a delta over.
    pub parent: Option<DiskIndex>,
}

/// The length of each disk's chain (1 for a disk without a parent), after
/// checking that every parent comes before its children (as the
/// descriptor mapping registers them, which also refuses loops) and that
/// no chain is longer than [`MAX_CHAIN_DEPTH`].
pub(crate) fn chain_depths(app: &ApplianceDescription) -> Result<Vec<usize>> {
    let mut depths: Vec<usize> = Vec::with_capacity(app.disks.len());
    for (i, d) in app.disks.iter().enumerate() {
        let depth = match d.parent {
            None => 1,
            Some(p) => match depths.get(p.0) {
                Some(pd) => pd + 1,
                None => {
                    return Err(ImportError::Unsupported(format!(
                        "disk {} is listed before its parent (disk index {})",
                        d.disk_id, p.0
                    )));
                }
            },
        };
        if depth > MAX_CHAIN_DEPTH {
            return Err(ImportError::ChainTooDeep {
                disk_id: d.disk_id.clone(),
                limit: MAX_CHAIN_DEPTH,
            });
        }
        debug_assert_eq!(depths.len(), i);
        depths.push(depth);
    }
    Ok(depths)
}

/// The disk ids of `disk`'s ancestors, nearest first.
pub(crate) fn ancestors(app: &ApplianceDescription, disk: DiskIndex) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = app.disks.get(disk.0).and_then(|d| d.parent);
    // Parents come before children, so each step goes down: this ends.
    while let Some(p) = cur.filter(|p| p.0 < disk.0 && out.len() < app.disks.len()) {
        let Some(d) = app.disks.get(p.0) else { break };
        out.push(d.disk_id.clone());
        cur = d.parent.filter(|q| q.0 < p.0);
    }
    out
}

/// What each file of the package becomes, by its full member name
/// (`full` joins the package root and a normalised href).
pub(crate) fn file_plans(
    app: &ApplianceDescription,
    full: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<String, FilePlan>> {
    chain_depths(app)?;
    let mut plans: BTreeMap<String, FilePlan> = BTreeMap::new();
    for f in &app.files {
        if let Ok(href) = package::normalize_href(&f.href) {
            plans.insert(full(&href), FilePlan::default());
        }
    }
    for (i, d) in app.disks.iter().enumerate() {
        let Some(f) = d.file.and_then(|f| app.files.get(f.0)) else {
            continue;
        };
        let Ok(href) = package::normalize_href(&f.href) else {
            continue;
        };
        let e = plans.entry(full(&href)).or_default();
        e.capacity = e.capacity.max(Some(d.capacity_bytes));
        e.iso |= d.format == DiskFormat::Iso;
        match e.disk {
            None => {
                e.disk = Some(DiskIndex(i));
                e.parent = d.parent;
            }
            // One file converted once: every disk that uses it must see it
            // over the same parent.
            Some(first) if e.parent != d.parent => {
                return Err(ImportError::FileConflict {
                    href: f.href.clone(),
                    first: app
                        .disks
                        .get(first.0)
                        .map(|x| x.disk_id.clone())
                        .unwrap_or_default(),
                    second: d.disk_id.clone(),
                });
            }
            Some(_) => {}
        }
    }
    for vm in &app.vms {
        for c in &vm.cdroms {
            let file = match c.image {
                Some(Backing::File(f)) => app.files.get(f.0),
                Some(Backing::Disk(d)) => app.disk_file(d),
                None => None,
            };
            if let Some(f) = file
                && let Ok(href) = package::normalize_href(&f.href)
            {
                plans.entry(full(&href)).or_default().iso = true;
            }
        }
    }
    for (name, p) in &plans {
        if p.iso
            && let Some(d) = p.disk.filter(|_| p.parent.is_some())
        {
            return Err(ImportError::Unsupported(format!(
                "{name} is CD/DVD media and a delta disk ({})",
                app.disks.get(d.0).map_or("", |x| x.disk_id.as_str())
            )));
        }
    }
    Ok(plans)
}

/// The hrefs of the package's files with every delta disk's file after
/// its parent's, so that a directory package is read parents first.
pub(crate) fn read_order(app: &ApplianceDescription) -> Vec<&str> {
    let mut order: Vec<&str> = app
        .disks
        .iter()
        .filter_map(|d| d.file.and_then(|f| app.files.get(f.0)))
        .map(|f| f.href.as_str())
        .collect();
    order.extend(app.files.iter().map(|f| f.href.as_str()));
    order
}
