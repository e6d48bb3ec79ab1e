//! Each `qpool` verb as engine calls: the arguments turned into a volume definition, a
//! request or a name, the call into [`crate::pool`], and the text it prints on success.
//!
//! Owns: reading the arguments clap leaves as text (virsh's size suffixes and `vol-resize`'s
//! `+N` / `-N`, format names, wipe algorithms, `--force`), reading volume XML files, virsh's
//! one-line confirmations (`Vol NAME created`), and the rule that a download removes a
//! local file it made when it fails.
//! Must not: implement engine logic, format tables or blocks (that is [`super::output`]), or
//! know about the libvirt bridge.

use std::path::Path;

use super::{Args, Command, Error, OutputFormat, output};
use crate::model::{VolFormat, WipeAlgorithm};
use crate::policy::CreateFlags;
use crate::pool::{Pool, ResizeRequest, WhenInUse};
use crate::units::parse_virsh_size;
use crate::xml::{BackingStoreDef, CapacityRule, VolumeDef};

fn read_volume_xml(path: &Path) -> Result<VolumeDef, Error> {
    read_volume_xml_with(path, CapacityRule::Required)
}

/// Reads a volume XML file under `rule` (a create-from may leave the capacity out).
fn read_volume_xml_with(path: &Path, rule: CapacityRule) -> Result<VolumeDef, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadingFile {
        path: path.to_path_buf(),
        source,
    })?;
    VolumeDef::parse_with(&text, rule).map_err(|e| Error::XmlFile {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

fn size_arg(what: &'static str, value: &str) -> Result<u64, Error> {
    parse_virsh_size(value).map_err(|source| Error::Size {
        what,
        value: value.to_string(),
        source,
    })
}

fn format_arg(option: &'static str, value: &str) -> Result<VolFormat, Error> {
    value
        .parse()
        .map_err(|source| Error::Format { option, source })
}

/// `--force`: go ahead with a volume another process holds.
fn when_in_use(force: bool) -> WhenInUse {
    if force {
        WhenInUse::Force
    } else {
        WhenInUse::Refuse
    }
}

fn flags(prealloc_metadata: bool) -> CreateFlags {
    CreateFlags { prealloc_metadata }
}

pub(super) fn run_verb(args: &Args, pool: &Pool, autostart: bool) -> Result<String, Error> {
    Ok(match &args.command {
        // The passphrase flags were made the pool's secrets before the verb runs.
        Command::VolCreate {
            file,
            prealloc_metadata,
            ..
        } => {
            let def = read_volume_xml(file)?;
            let created = pool.create_volume(&def, flags(*prealloc_metadata), None)?;
            match args.output {
                OutputFormat::Json => output::json::created(&created),
                OutputFormat::Human => {
                    format!(
                        "Vol {} created from {}\n",
                        created.volume.name,
                        file.display()
                    )
                }
            }
        }
        Command::VolCreateAs {
            name,
            capacity,
            allocation,
            format,
            backing_vol,
            backing_vol_format,
            prealloc_metadata,
        } => {
            let mut def = VolumeDef::new(name.clone(), size_arg("capacity", capacity)?);
            def.allocation = allocation
                .as_deref()
                .map(|a| size_arg("allocation", a))
                .transpose()?;
            def.target.format = format
                .as_deref()
                .map(|f| format_arg("format", f))
                .transpose()?;
            if let Some(backing) = backing_vol {
                // Like virsh: a volume of this pool by name, else a path.
                let path = match pool.volume_name(backing) {
                    Ok(n) if pool.volume(&n).is_ok() => pool.volume_path(&n).display().to_string(),
                    _ => backing.clone(),
                };
                def.backing_store = Some(BackingStoreDef {
                    path,
                    format: backing_vol_format
                        .as_deref()
                        .map(|f| format_arg("backing-vol-format", f))
                        .transpose()?,
                });
            }
            let created = pool.create_volume(&def, flags(*prealloc_metadata), None)?;
            match args.output {
                OutputFormat::Json => output::json::created(&created),
                OutputFormat::Human => format!("Vol {} created\n", created.volume.name),
            }
        }
        Command::VolClone {
            vol,
            newname,
            prealloc_metadata,
            reflink,
        } => {
            let source = pool.volume_name(vol)?;
            let created =
                pool.clone_volume(&source, newname, flags(*prealloc_metadata), *reflink)?;
            match args.output {
                OutputFormat::Json => output::json::created(&created),
                OutputFormat::Human => {
                    format!("Vol {} cloned from {source}\n", created.volume.name)
                }
            }
        }
        Command::VolCreateFrom {
            file,
            vol,
            prealloc_metadata,
            reflink,
            ..
        } => {
            let def = read_volume_xml_with(file, CapacityRule::FromSource)?;
            let source = pool.volume_name(vol)?;
            let created = pool.create_volume_from(
                &def,
                pool,
                &source,
                flags(*prealloc_metadata),
                *reflink,
                None,
            )?;
            match args.output {
                OutputFormat::Json => output::json::created(&created),
                OutputFormat::Human => {
                    format!(
                        "Vol {} created from input vol {source}\n",
                        created.volume.name
                    )
                }
            }
        }
        Command::VolList { details } => match args.output {
            OutputFormat::Json => output::json::vol_list(pool.name(), &pool.list()?),
            OutputFormat::Human => output::vol_list(&pool.list()?, *details),
        },
        Command::VolInfo {
            vol,
            bytes,
            physical,
        } => {
            let info = pool.volume(&pool.volume_name(vol)?)?;
            match args.output {
                OutputFormat::Json => output::json::volume(&info),
                OutputFormat::Human => output::vol_info(&info, *bytes, *physical),
            }
        }
        Command::VolDumpxml { vol } => pool.volume(&pool.volume_name(vol)?)?.report().to_xml(),
        Command::VolPath { vol } => {
            let info = pool.volume(&pool.volume_name(vol)?)?;
            format!("{}\n", info.path.display())
        }
        Command::VolDelete { vol, force } => {
            let name = pool.volume_name(vol)?;
            pool.delete(&name, when_in_use(*force))?;
            format!("Vol {name} deleted\n")
        }
        Command::VolUpload(t) => {
            let name = pool.volume_name(&t.vol)?;
            let local = std::fs::File::open(&t.file).map_err(|source| Error::ReadingFile {
                path: t.file.clone(),
                source,
            })?;
            pool.upload_from_file(
                &name,
                local,
                &t.file,
                t.offset,
                t.length,
                t.sparse,
                when_in_use(t.force),
            )?;
            String::new()
        }
        Command::VolDownload(t) => {
            let name = pool.volume_name(&t.vol)?;
            // The volume is checked before the local file is created.
            pool.volume(&name)?;
            // As virsh: a file this download made is removed again when it fails; a file
            // that was there is truncated and left.
            let writing_file = |source| Error::WritingFile {
                path: t.file.clone(),
                source,
            };
            let (local, created) = match std::fs::File::create_new(&t.file) {
                Ok(f) => (f, true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    (std::fs::File::create(&t.file).map_err(writing_file)?, false)
                }
                Err(e) => return Err(writing_file(e)),
            };
            let done = pool.download_to_file(&name, &local, &t.file, t.offset, t.length, t.sparse);
            if done.is_err() && created {
                let _ = std::fs::remove_file(&t.file);
            }
            done?;
            String::new()
        }
        Command::VolWipe {
            vol,
            algorithm,
            force,
        } => {
            let name = pool.volume_name(vol)?;
            let algorithm: WipeAlgorithm = algorithm.parse().map_err(Error::Algorithm)?;
            pool.wipe_volume(&name, algorithm, when_in_use(*force))?;
            format!("Vol {name} wiped\n")
        }
        Command::VolResize {
            vol,
            capacity,
            allocate,
            delta,
            shrink,
            force,
        } => {
            let name = pool.volume_name(vol)?;
            // virsh: "+N" is absolute; "-N" needs --shrink and means "shrink by N".
            let mut text = capacity.trim_start();
            let mut delta = *delta;
            if let Some(rest) = text.strip_prefix('-') {
                if !*shrink {
                    return Err(Error::NegativeSize);
                }
                text = rest;
                delta = true;
            }
            let value = size_arg("size", text.strip_prefix('+').unwrap_or(text))?;
            pool.resize_volume(
                &name,
                ResizeRequest {
                    capacity: value,
                    delta,
                    shrink: *shrink,
                    allocate: *allocate,
                },
                when_in_use(*force),
            )?;
            if delta {
                format!("Size of volume '{name}' successfully changed by {text}\n")
            } else {
                format!("Size of volume '{name}' successfully changed to {text}\n")
            }
        }
        Command::PoolInfo { bytes } => {
            let info = pool.info(true, autostart)?;
            match args.output {
                OutputFormat::Json => output::json::pool_info(&info),
                OutputFormat::Human => output::pool_info(&info, *bytes),
            }
        }
        Command::PoolRefresh => {
            pool.refresh()?;
            format!("Pool {} refreshed\n", pool.name())
        }
        Command::PoolDumpxml => pool.report()?.to_xml(),
        Command::LibvirtSync { .. } => unreachable!("libvirt-sync opens no pool"),
        Command::Explain {
            file,
            prealloc_metadata,
        } => {
            let def = read_volume_xml(file)?;
            let plan = pool.plan(&def, flags(*prealloc_metadata))?;
            match args.output {
                OutputFormat::Json => output::json::plan(&plan),
                OutputFormat::Human => output::explain(&plan),
            }
        }
    })
}
