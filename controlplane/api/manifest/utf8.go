package manifest

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// invalidUTF8 locates the first byte of data that is not UTF-8, as a
// Problem with its line, or returns false when data is UTF-8 (or UTF-16
// with a byte-order mark, which the YAML parser reads too). The parser
// itself only says "invalid leading UTF-8 octet", without a line; the API
// server would refuse the object anyway, naming the field, but the line
// is what an editor needs.
func invalidUTF8(data []byte) (Problem, bool) {
	if utf8.Valid(data) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) || bytes.HasPrefix(data, []byte{0xFF, 0xFE}) {
		return Problem{}, false
	}
	line, lineStart := 1, 0
	for off := 0; off < len(data); {
		r, size := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && size <= 1 {
			col := utf8.RuneCount(data[lineStart:off]) + 1
			return Problem{Line: line, Msg: fmt.Sprintf("column %d: byte 0x%02x is not valid UTF-8; manifests must be UTF-8 text", col, data[off])}, true
		}
		if r == '\n' {
			line, lineStart = line+1, off+1
		}
		off += size
	}
	return Problem{}, false
}
