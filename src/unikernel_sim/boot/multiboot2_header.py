"""The Multiboot2 header in an OS image (Multiboot2 specification, section 3.1).

``find_header`` scans the first 32 KiB at 8-byte steps for a header whose
magic, architecture, length and checksum add up, as GRUB does; ``parse`` then
validates every tag, so a bad image is refused with a line that names the
offset and the field. Tags that a BIOS-booting loader does not act on (EFI
boot services, EFI entry addresses) are accepted and ignored, as GRUB does on
BIOS; any other unknown tag is refused unless marked optional (3.1.3).
"""
from __future__ import annotations

import struct

from unikernel_sim.errors import ImageError
from unikernel_sim.records import Record, record_equal, record_repr

HEADER_MAGIC = 0xE85250D6
BOOTLOADER_MAGIC = 0x36D76289
SEARCH_LIMIT = 32768
HEADER_ALIGN = 8
ARCH_I386 = 0
ARCH_MIPS32 = 4
TAG_OPTIONAL = 1

TAG_END = 0
TAG_INFORMATION_REQUEST = 1
TAG_ADDRESS = 2
TAG_ENTRY_ADDRESS = 3
TAG_CONSOLE_FLAGS = 4
TAG_FRAMEBUFFER = 5
TAG_MODULE_ALIGN = 6
TAG_EFI_BS = 7
TAG_ENTRY_ADDRESS_EFI32 = 8
TAG_ENTRY_ADDRESS_EFI64 = 9
TAG_RELOCATABLE = 10

TAG_NAMES = {
    TAG_END: "end",
    TAG_INFORMATION_REQUEST: "information request",
    TAG_ADDRESS: "address",
    TAG_ENTRY_ADDRESS: "entry address",
    TAG_CONSOLE_FLAGS: "console flags",
    TAG_FRAMEBUFFER: "framebuffer",
    TAG_MODULE_ALIGN: "module alignment",
    TAG_EFI_BS: "EFI boot services",
    TAG_ENTRY_ADDRESS_EFI32: "EFI i386 entry address",
    TAG_ENTRY_ADDRESS_EFI64: "EFI amd64 entry address",
    TAG_RELOCATABLE: "relocatable",
}

# Exact tag sizes (section 3.1.x); the information request is 8 + 4n.
MINIMAL_HEADER_LENGTH = 24          # the fixed part (16) and an end tag (8)
MAX_HEADER_WALK = 64 * 1024          # how far past the search window the tag walk may go

TAG_SIZES = {
    TAG_END: 8,
    TAG_ADDRESS: 24,
    TAG_ENTRY_ADDRESS: 12,
    TAG_CONSOLE_FLAGS: 12,
    TAG_FRAMEBUFFER: 20,
    TAG_MODULE_ALIGN: 8,
    TAG_EFI_BS: 8,
    TAG_ENTRY_ADDRESS_EFI32: 12,
    TAG_ENTRY_ADDRESS_EFI64: 12,
    TAG_RELOCATABLE: 24,
}

HIGHEST_KNOWN_INFO_TAG = 21
"""Boot information tag types 0..21 are defined by the specification; a
required request for anything else must make the loader fail (3.1.4)."""


class HeaderTag(Record):
    """One header tag as it lies in the file."""

    type: int
    flags: int
    size: int
    offset: int            # file offset of the tag
    body: bytes            # the bytes after type/flags/size

    @property
    def optional(self) -> bool:
        return bool(self.flags & TAG_OPTIONAL)

    @property
    def name(self) -> str:
        return TAG_NAMES.get(self.type, f"unknown type {self.type}")


class AddressTag(Record):
    """The address tag (type 2): where an a.out-kludge image is loaded."""

    header_addr: int
    load_addr: int
    load_end_addr: int
    bss_end_addr: int


class FramebufferRequest(Record):
    """The framebuffer tag (type 5): the mode the kernel asks for."""

    width: int
    height: int
    depth: int
    optional: bool


class RelocatableTag(Record):
    """The relocatable tag (type 10): where the image may be placed instead."""

    min_addr: int
    max_addr: int
    align: int
    preference: int


class Multiboot2Header:
    """A parsed Multiboot2 header (spec 3.1) and what its tags ask of the loader."""

    def __init__(self, offset: int, architecture: int, header_length: int, checksum: int) -> None:
        self.offset = offset
        self.architecture = architecture
        self.header_length = header_length
        self.checksum = checksum
        self.tags: list[HeaderTag] = []
        self.requested_info: list[int] = []
        self.optional_info: list[int] = []
        self.address: AddressTag | None = None
        self.entry_address: int | None = None
        self.console_flags: int | None = None
        self.framebuffer: FramebufferRequest | None = None
        self.module_align = False
        self.relocatable: RelocatableTag | None = None
        self.warnings: list[str] = []      # what GRUB accepts but is off (printed, not fatal)

    def __repr__(self) -> str:
        return record_repr(self)

    def __eq__(self, other: object) -> bool:
        return record_equal(self, other)


def _checksum_ok(magic: int, arch: int, length: int, checksum: int) -> bool:
    return (magic + arch + length + checksum) & 0xFFFFFFFF == 0


def _magic_offsets(data: bytes, start: int):
    """Aligned offsets of the header magic from start on, found at C speed (a
    1 GiB file of zeros is scanned in well under a second, not in 20)."""
    needle = struct.pack("<I", HEADER_MAGIC)
    offset = data.find(needle, start)
    while offset != -1 and offset <= len(data) - 16:
        if offset % HEADER_ALIGN == 0:
            yield offset
        offset = data.find(needle, offset + 1)


def find_header(data: bytes, where: str) -> int:
    """Offset of the first valid header in the first 32 KiB; ImageError otherwise.

    The error says what was found instead: a magic with a bad checksum, or a
    header beyond 32 KiB, so the user knows which fix applies."""
    limit = min(len(data), SEARCH_LIMIT)
    bad_checksum: tuple[int, int, int] | None = None
    for offset in range(0, limit - 15, HEADER_ALIGN):
        magic, arch, length, checksum = struct.unpack_from("<IIII", data, offset)
        if magic != HEADER_MAGIC:
            continue
        if _checksum_ok(magic, arch, length, checksum):
            return offset
        if bad_checksum is None:
            expected = (-(magic + arch + length)) & 0xFFFFFFFF
            bad_checksum = (offset, checksum, expected)
    if bad_checksum:
        offset, got, expected = bad_checksum
        raise ImageError(
            f"Multiboot2 header at offset {offset:#x} has a bad checksum "
            f"({got:#010x}, expected {expected:#010x})",
            where=where,
            hint="checksum must make magic + architecture + header_length + checksum == 0 (mod 2^32)",
        )
    for offset in _magic_offsets(data, SEARCH_LIMIT - (SEARCH_LIMIT % HEADER_ALIGN)):
        magic, arch, length, checksum = struct.unpack_from("<IIII", data, offset)
        if _checksum_ok(magic, arch, length, checksum):
            raise ImageError(
                f"Multiboot2 header found at offset {offset:#x}, beyond the first 32 KiB",
                where=where,
                hint="the specification requires it within the first 32768 bytes; "
                "put its section first in the linker script",
            )
    raise ImageError(
        "no Multiboot2 header (magic 0xe85250d6, 8-byte aligned) in the first 32 KiB",
        where=where,
        hint="no Multiboot 1 header (0x1badb002, 4-byte aligned, first 8 KiB) either: is this a Multiboot kernel?",
    )


def parse(data: bytes, offset: int, where: str) -> Multiboot2Header:
    """Validate the header at offset and decode its tags."""
    magic, arch, length, checksum = struct.unpack_from("<IIII", data, offset)
    header = Multiboot2Header(offset=offset, architecture=arch, header_length=length, checksum=checksum)
    if arch != ARCH_I386:
        what = "32-bit MIPS" if arch == ARCH_MIPS32 else f"unknown ({arch})"
        raise ImageError(
            f"Multiboot2 header at {offset:#x} asks for architecture {what}",
            where=where,
            hint="unisim boots i386 (architecture 0) kernels",
        )
    if length < MINIMAL_HEADER_LENGTH:
        header.warnings.append(f"Multiboot2 header_length {length} is smaller than the fixed part and an end "
                               f"tag ({MINIMAL_HEADER_LENGTH}); GRUB reads the tags anyway, and so does unisim")
    _parse_tags(header, data, offset + 16, offset + length, where)
    return header


def _parse_tags(header: Multiboot2Header, data: bytes, position: int, end: int, where: str) -> None:
    """The tags as GRUB 2.06 walks them (multiboot_mbi2.c, checked on QEMU: tests/data/
    grub_reference/RECIPE.md): from the end of the fixed part until a tag of type 0,
    each next tag at the previous one's size rounded up to 8. GRUB does not bound the
    walk by header_length, nor check the end tag's size or a tag's own size; it refuses
    only a required tag it does not know. Those oddities become warnings here. A tag of
    size 0 other than the end would make GRUB walk in place forever: refused."""
    limit = min(len(data), header.offset + SEARCH_LIMIT + MAX_HEADER_WALK)
    while True:
        if position + 8 > limit:
            raise ImageError(
                f"Multiboot2 header has no end tag (tags run to offset {position:#x}, past the end of the file)"
                if limit == len(data) else f"Multiboot2 header has no end tag before offset {limit:#x}",
                where=where,
            )
        tag_type, flags, size = struct.unpack_from("<HHI", data, position)
        if position + 8 > end:
            header.warnings.append(f"Multiboot2 header tag type {tag_type} at offset {position:#x} lies past "
                                   f"header_length (the header ends at {end:#x})")
        if tag_type == TAG_END:
            if size != TAG_SIZES[TAG_END] or flags:
                header.warnings.append(f"Multiboot2 end tag at offset {position:#x} has size {size} and flags "
                                       f"{flags:#x} (the specification says 8 and 0)")
            header.tags.append(HeaderTag(tag_type, flags, size, position, b""))
            return
        if size == 0:
            raise ImageError(
                f"Multiboot2 header tag type {tag_type} at offset {position:#x} has size 0",
                where=where,
                hint="GRUB would read this tag forever; a tag is at least 8 bytes",
            )
        needed = size if tag_type == TAG_INFORMATION_REQUEST else _needed_size(tag_type)
        if position + needed > len(data):                   # the fields GRUB reads are not there
            raise ImageError(
                f"Multiboot2 header tag type {tag_type} at offset {position:#x} is cut off by the end of "
                f"the file (its fields take {needed} bytes, {len(data) - position} are left)",
                where=where,
                hint="the file is truncated, or the tag's size field is wrong",
            )
        body_end = min(position + max(size, needed), len(data))
        tag = HeaderTag(tag_type, flags, size, position, bytes(data[position + 8: body_end]))
        _check_tag_size(header, tag)
        header.tags.append(tag)
        _decode_tag(header, tag, where)
        position += (size + 7) & ~7


def _needed_size(tag_type: int) -> int:
    """Bytes a fixed-size tag's fields take: GRUB reads them whatever the size says."""
    return TAG_SIZES.get(tag_type, 8)


def _check_tag_size(header: Multiboot2Header, tag: HeaderTag) -> None:
    """A size the specification does not give is a warning: GRUB reads on regardless."""
    if tag.type == TAG_INFORMATION_REQUEST:
        valid = tag.size >= 8 and (tag.size - 8) % 4 == 0
        expected = "8 + 4 x (number of requests)"
    elif tag.type in TAG_SIZES:
        valid = tag.size == TAG_SIZES[tag.type]
        expected = str(TAG_SIZES[tag.type])
    else:
        valid, expected = tag.size >= 8, "at least 8"
    if not valid:
        header.warnings.append(f"Multiboot2 {tag.name} tag at offset {tag.offset:#x} has size {tag.size} "
                               f"(the specification says {expected})")


def _decode_tag(header: Multiboot2Header, tag: HeaderTag, where: str) -> None:
    body = tag.body
    if tag.type == TAG_INFORMATION_REQUEST:
        count = max(0, tag.size - 8) // 4                     # GRUB's count: the size, rounded down
        types = list(struct.unpack_from(f"<{count}I", body))
        (header.optional_info if tag.optional else header.requested_info).extend(types)
        unknown = [t for t in types if t > HIGHEST_KNOWN_INFO_TAG]
        if unknown and not tag.optional:
            raise ImageError(
                f"Multiboot2 information request at offset {tag.offset:#x} requires unknown "
                f"boot information type(s) {', '.join(map(str, unknown))}",
                where=where,
                hint="types 0-21 are defined; mark the request optional (flags bit 0) to boot anyway",
            )
    elif tag.type == TAG_ADDRESS:
        header.address = AddressTag(*struct.unpack_from("<IIII", body))
    elif tag.type == TAG_ENTRY_ADDRESS:
        header.entry_address = struct.unpack_from("<I", body)[0]
    elif tag.type == TAG_CONSOLE_FLAGS:
        header.console_flags = struct.unpack_from("<I", body)[0]
    elif tag.type == TAG_FRAMEBUFFER:
        width, height, depth = struct.unpack_from("<III", body)
        header.framebuffer = FramebufferRequest(width, height, depth, tag.optional)
    elif tag.type == TAG_MODULE_ALIGN:
        header.module_align = True
    elif tag.type == TAG_RELOCATABLE:
        header.relocatable = RelocatableTag(*struct.unpack_from("<IIII", body))
    elif tag.type in (TAG_EFI_BS, TAG_ENTRY_ADDRESS_EFI32, TAG_ENTRY_ADDRESS_EFI64):
        pass  # meaningful only when booted from UEFI; a BIOS loader ignores them
    elif not tag.optional:
        raise ImageError(
            f"Multiboot2 header tag type {tag.type} at offset {tag.offset:#x} is not supported "
            "and not marked optional",
            where=where,
            hint="the specification requires a loader to refuse such an image; set flags bit 0 "
            "to make the tag optional",
        )
