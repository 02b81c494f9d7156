//! A small reader of the kernel's BTF (/sys/kernel/btf/vmlinux): struct
//! member offsets and enum values. Rust/aya has no CO-RE field relocation, so
//! the drop probe gets its sk_buff/net_device/net offsets from here, at load
//! time, for the kernel it runs on. Also the prototypes of tracepoints
//! (`btf_trace_*` typedefs). Format: linux/Documentation/bpf/btf.rst.

use probe_model::reasons::ReasonNames;

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Names are offsets into the string section: the kernel's BTF has ~150k
/// types, and keeping them compact keeps the loader's peak memory low.
#[derive(Clone, Debug)]
struct Member {
    name: u32,
    type_id: u32,
    /// Offset in bits from the start of the enclosing struct/union.
    bit_offset: u32,
}

#[derive(Clone, Debug)]
enum Type {
    /// STRUCT or UNION.
    Composite {
        name: u32,
        members: Vec<Member>,
    },
    /// ENUM or ENUM64: (name, value) pairs.
    Enum {
        name: u32,
        values: Vec<(u32, i64)>,
    },
    /// TYPEDEF (named), PTR or a modifier: a reference to `target`.
    Ref {
        typedef: bool,
        name: u32,
        target: u32,
    },
    /// FUNC_PROTO: its number of parameters.
    FuncProto {
        params: u32,
    },
    Other,
}

/// The parsed type section. Type id N is `types[N]` (id 0 is `void`).
#[derive(Debug)]
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, String> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("BTF truncated at byte {off}"))
}

/// The bytes of section `name` of a little-endian 64-bit ELF file.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Result<&'a [u8], String> {
    let short = || "ELF file truncated".to_string();
    let u16_at = |off: usize| -> Result<usize, String> {
        elf.get(off..off + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(short)
    };
    let u64_at = |off: usize| -> Result<usize, String> {
        elf.get(off..off + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or_else(short)
    };
    // e_ident: class 2 (64-bit), data 1 (little-endian).
    if elf.get(4..6) != Some(&[2, 1]) {
        return Err("not a little-endian 64-bit ELF file".into());
    }
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let header = |i: usize| -> Result<(usize, usize, usize), String> {
        let h = shoff + i * shentsize;
        Ok((
            u32_at(elf, h)? as usize,
            u64_at(h + 0x18)?,
            u64_at(h + 0x20)?,
        ))
    };
    let bytes = |off: usize, size: usize| elf.get(off..off + size).ok_or_else(short);
    let (_, names_off, names_size) = header(shstrndx)?;
    let names = bytes(names_off, names_size)?;
    for i in 0..shnum {
        let (name_at, off, size) = header(i)?;
        let this = names.get(name_at..).unwrap_or_default();
        if this.split(|b| *b == 0).next() == Some(name.as_bytes()) {
            return bytes(off, size);
        }
    }
    Err(format!(
        "no {name} section (a kernel built without CONFIG_DEBUG_INFO_BTF)"
    ))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_kernel() -> Result<Btf, String> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|e| {
            format!("cannot read {path} ({e}): the kernel needs CONFIG_DEBUG_INFO_BTF")
        })?;
        Btf::parse(&data)
    }

    /// BTF from a file: raw BTF (as /sys/kernel/btf/vmlinux), or an ELF
    /// image (a kernel's vmlinux) whose `.BTF` section holds it.
    pub fn from_file(path: &std::path::Path) -> Result<Btf, String> {
        let data =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if data.starts_with(b"\x7fELF") {
            let btf = elf_section(&data, ".BTF").map_err(|e| format!("{}: {e}", path.display()))?;
            return Btf::parse(btf);
        }
        Btf::parse(&data)
    }

    /// Parses little-endian BTF (x86-64, arm64).
    pub fn parse(data: &[u8]) -> Result<Btf, String> {
        let magic = data
            .get(..2)
            .map(|m| u16::from_le_bytes([m[0], m[1]]))
            .ok_or("BTF shorter than its header")?;
        if magic != MAGIC {
            return Err(format!("not little-endian BTF (magic {magic:#x})"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .ok_or_else(|| "BTF section out of range".to_string())
        };
        let (tsec, strings) = (section(type_off, type_len)?, section(str_off, str_len)?);

        let mut types = vec![Type::Other]; // id 0: void
        let mut pos = 0;
        while pos < tsec.len() {
            let name = u32_at(tsec, pos)?;
            let info = u32_at(tsec, pos + 4)?;
            let (vlen, kind, kind_flag) = (
                (info & 0xffff) as usize,
                (info >> 24) & 0x1f,
                info >> 31 == 1,
            );
            pos += 12;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let offset = u32_at(tsec, m + 8)?;
                        members.push(Member {
                            name: u32_at(tsec, m)?,
                            type_id: u32_at(tsec, m + 4)?,
                            // With kind_flag the top 8 bits are a bitfield size.
                            bit_offset: if kind_flag {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    pos += vlen * 12;
                    Type::Composite { name, members }
                }
                KIND_ENUM | KIND_ENUM64 => {
                    let size = if kind == KIND_ENUM { 8 } else { 12 };
                    let mut values = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let v = pos + i * size;
                        let lo = u32_at(tsec, v + 4)?;
                        let value = if kind == KIND_ENUM {
                            lo as i32 as i64
                        } else {
                            ((u32_at(tsec, v + 8)? as i64) << 32) | lo as i64
                        };
                        values.push((u32_at(tsec, v)?, value));
                    }
                    pos += vlen * size;
                    Type::Enum { name, values }
                }
                KIND_PTR | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_TYPE_TAG => Type::Ref {
                    typedef: kind == KIND_TYPEDEF,
                    name,
                    // size_or_type: the referenced type's id.
                    target: u32_at(tsec, pos - 4)?,
                },
                KIND_FUNC_PROTO => {
                    pos += vlen * 8;
                    Type::FuncProto {
                        params: vlen as u32,
                    }
                }
                _ => {
                    pos += match kind {
                        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                        KIND_ARRAY => 12,
                        KIND_DATASEC => vlen * 12,
                        0 | 20.. => return Err(format!("unknown BTF kind {kind}")),
                        _ => 0, // FWD, FUNC, FLOAT
                    };
                    Type::Other
                }
            };
            types.push(ty);
        }
        Ok(Btf {
            types,
            strings: strings.to_vec(),
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]
    }

    fn composite(&self, name: &str) -> Result<&[Member], String> {
        self.types
            .iter()
            .find_map(|t| match t {
                // A FWD declaration has no members; the definition does.
                Type::Composite { name: n, members }
                    if !members.is_empty() && self.name(*n) == name.as_bytes() =>
                {
                    Some(members.as_slice())
                }
                _ => None,
            })
            .ok_or_else(|| format!("struct {name} not in the kernel's BTF"))
    }

    /// Byte offset of `member` in struct/union `ty`, looking through anonymous
    /// structs and unions (sk_buff keeps `dev` and `network_header` in them).
    pub fn member_offset(&self, ty: &str, member: &str) -> Result<u32, String> {
        let members = self.composite(ty)?;
        let bits = self
            .find_member(members, member, 0)
            .ok_or_else(|| format!("{ty}.{member} not in the kernel's BTF"))?;
        if bits % 8 != 0 {
            return Err(format!("{ty}.{member} is a bitfield"));
        }
        Ok(bits / 8)
    }

    fn find_member(&self, members: &[Member], name: &str, base: u32) -> Option<u32> {
        for m in members {
            if self.name(m.name) == name.as_bytes() {
                return Some(base + m.bit_offset);
            }
        }
        for m in members.iter().filter(|m| self.name(m.name).is_empty()) {
            if let Some(Type::Composite { members: inner, .. }) = self.types.get(m.type_id as usize)
            {
                if let Some(off) = self.find_member(inner, name, base + m.bit_offset) {
                    return Some(off);
                }
            }
        }
        None
    }

    /// The value of enumerator `name` in whichever enum declares it (the
    /// softirq vectors' enum, for one, has no name).
    pub fn enum_value(&self, name: &str) -> Option<i64> {
        self.types.iter().find_map(|t| match t {
            Type::Enum { values, .. } => values
                .iter()
                .find(|(n, _)| self.name(*n) == name.as_bytes())
                .map(|(_, v)| *v),
            _ => None,
        })
    }

    /// The number of parameters of the function prototype that typedef
    /// `name` points to, through modifiers: for a tracepoint's
    /// `typedef void (*btf_trace_X)(void *__data, args...)` that is 1 + its
    /// arguments.
    pub fn typedef_fn_params(&self, name: &str) -> Result<u32, String> {
        let mut id = self
            .types
            .iter()
            .position(|t| {
                matches!(t, Type::Ref { typedef: true, name: n, .. }
                    if self.name(*n) == name.as_bytes())
            })
            .ok_or_else(|| format!("typedef {name} not in the kernel's BTF"))?;
        // typedef -> [modifiers] -> ptr -> [modifiers] -> func_proto: a few hops.
        for _ in 0..8 {
            match self.types.get(id) {
                Some(Type::Ref { target, .. }) => id = *target as usize,
                Some(Type::FuncProto { params }) => return Ok(*params),
                _ => break,
            }
        }
        Err(format!(
            "typedef {name} is not a function pointer in the kernel's BTF"
        ))
    }

    /// The values of enum `name`, in declaration order.
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, i64)>, String> {
        self.types
            .iter()
            .find_map(|t| match t {
                Type::Enum { name: n, values } if self.name(*n) == name.as_bytes() => Some(
                    values
                        .iter()
                        .map(|(v, value)| {
                            (String::from_utf8_lossy(self.name(*v)).into_owned(), *value)
                        })
                        .collect(),
                ),
                _ => None,
            })
            .ok_or_else(|| format!("enum {name} not in the kernel's BTF"))
    }

    /// The kernel's drop reason names; Err names what is missing (Linux
    /// < 5.17 has no drop reasons).
    pub fn drop_reasons(&self) -> Result<ReasonNames, String> {
        ReasonNames::from_enums(
            self.enum_values("skb_drop_reason").ok().as_deref(),
            // Absent before Linux 6.4: no subsystems then.
            self.enum_values("skb_drop_reason_subsys").ok().as_deref(),
        )
    }
}

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
