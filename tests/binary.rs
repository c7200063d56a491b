//! The shipped binary is static: no ELF interpreter, so no dynamic loader or libc is
//! needed on the host.

mod common;

#[test]
fn nsrun_has_no_elf_interpreter() {
    let elf = std::fs::read(common::NSRUN).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    assert!(phnum > 0, "no program headers");
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
        assert_ne!(
            p_type, PT_INTERP,
            "nsrun has an ELF interpreter: it is not static"
        );
    }
}
