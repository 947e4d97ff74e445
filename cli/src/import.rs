//! `vmimport PACKAGE` / `vmimport import PACKAGE`: import an appliance, and
//! `vmimport inspect PACKAGE`: describe one without converting anything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ovf::descriptor::{ApplianceDescription, Backing, VmDescription};
use ovf::import::{ImportOptions, ImportReport, ImportedDisk};
use serde::Serialize;
use vmm::config::{
    BootConfig, DiskConfig, DiskFormat, MAX_VCPUS, MIN_MEMORY, NicConfig, OsInfo, ProductInfo,
    SerialConfig, VmConfig,
};
use vmm::layout::MAX_MEMORY;

use crate::disk::{fail, print_json};
use crate::output::{OutputFormat, error_chain, human_size};

/// Output disk formats on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiskFormatArg {
    /// VHDX (the default).
    Vhdx,
    /// VHD.
    Vhd,
    /// Raw.
    Raw,
}

/// Arguments of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Output directory (default: the package's base name, in the current
    /// directory). Created; refused if it exists and is not empty.
    #[arg(long = "output-dir", short = 'o')]
    out_dir: Option<PathBuf>,
    /// Format of the converted disks.
    #[arg(long, value_enum, default_value = "vhdx")]
    disk_format: DiskFormatArg,
    /// Report manifest problems as warnings instead of failing.
    #[arg(long)]
    no_verify: bool,
    /// Deployment option to use (default: the descriptor's default).
    #[arg(long)]
    configuration: Option<String>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    /// The package: an .ova file, an .ovf file, or a directory holding one.
    package: PathBuf,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Deployment option to describe (default: the descriptor's default).
    #[arg(long)]
    configuration: Option<String>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
    /// The package: an .ova file, an .ovf file, or a directory holding one.
    package: PathBuf,
}

/// A serde enum's name as it appears in JSON.
fn tag<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        // Enums with data serialise as {"tag": "value"}: show the value.
        Ok(serde_json::Value::Object(m)) if m.len() == 1 => match m.values().next() {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => serde_json::Value::Object(m).to_string(),
        },
        Ok(other) => other.to_string(),
        Err(_) => String::from("?"),
    }
}

const DEFAULT_MEMORY: u64 = 512 << 20;

fn disk_for<'a>(
    app: &ApplianceDescription,
    report: &'a ImportReport,
    backing: &Backing,
) -> Option<&'a ImportedDisk> {
    let id = match backing {
        Backing::Disk(i) => &app.disks.get(i.0)?.disk_id,
        Backing::File(i) => &app.files.get(i.0)?.id,
    };
    report.disk(id)
}

/// The VM definition of one imported VM (see README, "VM definition"):
/// what `vmimport run` reads. Values the VMM cannot take are brought into
/// its limits, each with a warning.
fn definition(vm: &VmDescription, report: &ImportReport, warnings: &mut Vec<String>) -> VmConfig {
    let app = &report.appliance;
    let mut disks = Vec::new();
    for d in &vm.disks {
        match disk_for(app, report, &d.backing) {
            Some(out) => disks.push(DiskConfig {
                format: Some(report_format(out)),
                bus: d.address.as_ref().map(|a| tag(&a.bus)),
                ..DiskConfig::new(&out.output)
            }),
            None => warnings.push(format!(
                "{}: drive {} has no imported disk",
                vm.name, d.instance_id
            )),
        }
    }
    for c in &vm.cdroms {
        if let Some(out) = c.image.as_ref().and_then(|b| disk_for(app, report, b)) {
            disks.push(DiskConfig {
                format: Some(DiskFormat::Raw),
                readonly: true,
                bus: c.address.as_ref().map(|a| tag(&a.bus)),
                ..DiskConfig::new(&out.output)
            });
        }
    }
    let product = vm.products.first().map(|p| ProductInfo {
        name: p.product.clone(),
        vendor: p.vendor.clone(),
        version: p.full_version.clone().or_else(|| p.version.clone()),
    });
    VmConfig {
        name: Some(vm.name.clone()),
        boot: BootConfig::default(),
        cpus: vm_cpus(vm, warnings),
        memory: vm_memory(vm, warnings),
        serial: SerialConfig::default(),
        disks,
        nics: vm
            .nics
            .iter()
            .map(|n| NicConfig {
                network: n.network.clone(),
                model: Some(tag(&n.adapter)),
                mac: n.mac_address.clone(),
            })
            .collect(),
        os: vm.os.as_ref().map(|o| OsInfo {
            id: Some(u32::from(o.id)),
            description: o.name.clone(),
        }),
        product,
    }
}

/// The declared vCPU count, within 1..=MAX_VCPUS.
fn vm_cpus(vm: &VmDescription, warnings: &mut Vec<String>) -> u8 {
    let declared = vm.vcpus.unwrap_or(1);
    let cpus = declared.clamp(1, u32::from(MAX_VCPUS));
    if cpus != declared {
        warnings.push(format!(
            "{}: {declared} vCPUs declared; the VM definition has {cpus}",
            vm.name
        ));
    }
    u8::try_from(cpus).unwrap_or(MAX_VCPUS)
}

/// The declared memory, rounded up to whole 4 KiB pages and within the
/// VMM's limits.
fn vm_memory(vm: &VmDescription, warnings: &mut Vec<String>) -> u64 {
    let Some(declared) = vm.memory_bytes else {
        warnings.push(format!("{}: no memory size given; using 512 MiB", vm.name));
        return DEFAULT_MEMORY;
    };
    let memory = declared
        .checked_next_multiple_of(4096)
        .unwrap_or(MAX_MEMORY)
        .clamp(MIN_MEMORY, MAX_MEMORY);
    if memory != declared {
        warnings.push(format!(
            "{}: {declared} bytes of memory declared; the VM definition has {memory}",
            vm.name
        ));
    }
    memory
}

fn report_format(d: &ImportedDisk) -> DiskFormat {
    match Path::new(&d.output).extension().and_then(|e| e.to_str()) {
        Some("vhdx") => DiskFormat::Vhdx,
        Some("vhd") => DiskFormat::Vhd,
        _ => DiskFormat::Raw,
    }
}

fn default_out_dir(package: &Path) -> PathBuf {
    let canon = package
        .canonicalize()
        .unwrap_or_else(|_| package.to_path_buf());
    let stem = if canon.is_dir() {
        canon.file_name()
    } else {
        canon.file_stem()
    };
    PathBuf::from(
        stem.map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "appliance".into()),
    )
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    report: &'a ImportReport,
    definitions: Vec<String>,
}

pub fn run_import(a: ImportArgs) -> ExitCode {
    let out_dir = a
        .out_dir
        .clone()
        .unwrap_or_else(|| default_out_dir(&a.package));
    let options = ImportOptions {
        out_dir: out_dir.clone(),
        disk_format: match a.disk_format {
            DiskFormatArg::Vhdx => vhd::Format::Vhdx,
            DiskFormatArg::Vhd => vhd::Format::Vhd,
            DiskFormatArg::Raw => vhd::Format::Raw,
        },
        no_verify: a.no_verify,
        configuration: a.configuration.clone(),
    };
    let bar = crate::disk::spinner(a.output == OutputFormat::Human, "importing");
    let tell = |name: &str| {
        if let Some(b) = &bar {
            b.set_message(format!("converting {name}"));
        }
    };
    let result = ovf::import::import(&a.package, &options, Some(&tell));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            return fail(format_args!(
                "cannot import {}: {}",
                a.package.display(),
                error_chain(&e)
            ));
        }
    };
    let mut warnings = Vec::new();
    let mut definitions = Vec::new();
    let several = report.appliance.vms.len() > 1;
    for vm in &report.appliance.vms {
        let def = definition(vm, &report, &mut warnings);
        let text = def.to_toml();
        let name = if several {
            format!("{}.toml", safe_file_stem(&vm.name))
        } else {
            "vm.toml".to_string()
        };
        if let Err(e) = std::fs::write(out_dir.join(&name), text) {
            return fail(format_args!(
                "cannot write {}: {e}",
                out_dir.join(&name).display()
            ));
        }
        definitions.push(name);
    }
    report.warnings.extend(warnings);
    match a.output {
        OutputFormat::Json => {
            if let Err(code) = print_json(&Summary {
                report: &report,
                definitions,
            }) {
                return code;
            }
        }
        OutputFormat::Human => print_report(&report, &definitions),
    }
    ExitCode::SUCCESS
}

fn safe_file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "vm".into() } else { s }
}

fn print_vm(vm: &VmDescription, app: &ApplianceDescription, report: Option<&ImportReport>) {
    let os = vm
        .os
        .as_ref()
        .map(|o| {
            o.name
                .clone()
                .or(o.description.clone())
                .unwrap_or_else(|| format!("OS type {}", o.id))
        })
        .unwrap_or_else(|| "unknown OS".into());
    println!(
        "  vm {:?}: {} vCPU, {}, {os}",
        vm.name,
        vm.vcpus.map_or("?".into(), |c| c.to_string()),
        vm.memory_bytes
            .map_or("memory not given".into(), human_size)
    );
    for d in &vm.disks {
        let (id, file, cap) = match d.backing {
            Backing::Disk(i) => match app.disks.get(i.0) {
                Some(disk) => (
                    disk.disk_id.clone(),
                    disk.file
                        .and_then(|f| app.files.get(f.0))
                        .map(|f| f.href.clone()),
                    Some(disk.capacity_bytes),
                ),
                None => continue,
            },
            Backing::File(i) => match app.files.get(i.0) {
                Some(f) => (f.id.clone(), Some(f.href.clone()), None),
                None => continue,
            },
        };
        let bus = d
            .address
            .as_ref()
            .map(|a| tag(&a.bus))
            .unwrap_or_else(|| "?".into());
        let src = file.unwrap_or_else(|| "blank".into());
        let cap = cap.map(human_size).unwrap_or_default();
        match report.and_then(|r| r.disk(&id)) {
            Some(out) => println!(
                "    disk {id} on {bus}: {src} ({}) -> {} ({}, {} written){}",
                out.source_format.as_ref().map_or("created".into(), tag),
                out.output,
                human_size(out.virtual_size),
                human_size(out.bytes_written),
                match &out.parent {
                    Some(p) => format!(
                        "; delta of disk {p}, reads through {}",
                        out.backing.join(" -> ")
                    ),
                    None => String::new(),
                }
            ),
            None => println!("    disk {id} on {bus}: {src} {cap}"),
        }
    }
    for n in &vm.nics {
        println!(
            "    nic: {} on {}",
            tag(&n.adapter),
            n.network.as_deref().unwrap_or("no network")
        );
    }
    for p in &vm.products {
        let name = [
            p.vendor.as_deref(),
            p.product.as_deref(),
            p.full_version.as_deref().or(p.version.as_deref()),
        ]
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
        if !name.is_empty() {
            println!("    product: {name}");
        }
    }
    for u in &vm.unmapped {
        let what = u
            .name
            .clone()
            .unwrap_or_else(|| format!("item {}", u.instance_id));
        let req = if u.required { " (marked required)" } else { "" };
        println!("    not mapped: {what}: {}{req}", u.reason);
    }
}

fn print_report(r: &ImportReport, definitions: &[String]) {
    println!(
        "imported {} into {}",
        r.package.display(),
        r.out_dir.display()
    );
    let v = &r.verification;
    match &v.manifest {
        Some(m) => println!(
            "  manifest {m}: {}/{} digests match; {}",
            v.entries_ok, v.entries, v.signature
        ),
        None => println!("  no manifest; {}", v.signature),
    }
    for vm in &r.appliance.vms {
        print_vm(vm, &r.appliance, Some(r));
    }
    for d in definitions {
        println!("  VM definition: {}", r.out_dir.join(d).display());
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
}

pub fn run_inspect(a: InspectArgs) -> ExitCode {
    let i = match ovf::import::inspect(&a.package, a.configuration.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            return fail(format_args!(
                "cannot inspect {}: {}",
                a.package.display(),
                error_chain(&e)
            ));
        }
    };
    match a.output {
        OutputFormat::Json => {
            if let Err(code) = print_json(&i) {
                return code;
            }
        }
        OutputFormat::Human => {
            println!(
                "{}: descriptor {} (OVF {})",
                i.package.display(),
                i.descriptor,
                tag(&i.appliance.version)
            );
            for f in &i.files {
                println!("  file {} ({})", f.name, human_size(f.size));
            }
            let v = &i.verification;
            match &v.manifest {
                Some(m) => println!(
                    "  manifest {m}: {}/{} digests match; {}",
                    v.entries_ok, v.entries, v.signature
                ),
                None => println!("  no manifest; {}", v.signature),
            }
            for d in i.disks.iter().filter(|d| d.parent.is_some()) {
                println!(
                    "  disk {} is a delta over {}",
                    d.disk_id,
                    d.ancestors.join(" -> ")
                );
            }
            for vm in &i.appliance.vms {
                print_vm(vm, &i.appliance, None);
            }
            for w in &i.warnings {
                println!("warning: {w}");
            }
        }
    }
    ExitCode::SUCCESS
}
