package services

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
)

// The redis service's backup format: one instance's logical database as
// the DUMP payloads of its keys.
//
//	"GRREDIS1\n"                              magic
//	per key:
//	  'K'                                     record tag
//	  uint32 key length, key bytes            (at most 512 MiB, Redis' limit)
//	  int64  PTTL in ms (-1: no expiry)       never < -1
//	  uint32 payload length, payload bytes    DUMP's reply, at least 10 bytes
//	end:
//	  'E'                                     end tag
//	  uint64 number of records
//	  uint32 CRC-32 (IEEE) of every byte before it, magic included
//	nothing after it.
//
// Integers are big-endian. A DUMP payload ends with its RDB version (2
// bytes) and a CRC-64 (Jones, 8 bytes, little-endian) of everything before
// the CRC; the reader checks it, so a damaged value is refused before
// Restore flushes anything, not half way through.
const redisBackupMagic = "GRREDIS1\n"

const (
	redisMaxKeyLen  = 512 << 20
	redisMinPayload = 10
	redisTagRecord  = 'K'
	redisTagEnd     = 'E'
)

// redisCRC64 is the CRC-64 variant Redis puts at the end of DUMP payloads
// (Jones polynomial, reflected, no inversion).
var redisCRC64Table = crc64.MakeTable(0x95ac9329ac4bc9b5)

func redisCRC64(p []byte) uint64 {
	// crc64.Update inverts before and after; undo both.
	return ^crc64.Update(^uint64(0), redisCRC64Table, p)
}

// checkDumpPayload checks a DUMP payload's trailer.
func checkDumpPayload(p []byte) error {
	if len(p) < redisMinPayload {
		return fmt.Errorf("payload of %d bytes is shorter than a DUMP trailer", len(p))
	}
	body, sum := p[:len(p)-8], binary.LittleEndian.Uint64(p[len(p)-8:])
	if got := redisCRC64(body); got != sum {
		return fmt.Errorf("payload checksum %016x does not match %016x", got, sum)
	}
	return nil
}

// redisRecord is one key of a backup.
type redisRecord struct {
	Key     []byte
	PTTL    int64 // ms; -1: no expiry
	Payload []byte
}

// redisBackupWriter writes the format; close writes the end record.
type redisBackupWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   uint64
	err error
}

func newRedisBackupWriter(w io.Writer) *redisBackupWriter {
	bw := &redisBackupWriter{crc: crc32.NewIEEE()}
	bw.w = io.MultiWriter(w, bw.crc)
	bw.write([]byte(redisBackupMagic))
	return bw
}

func (bw *redisBackupWriter) write(p []byte) {
	if bw.err == nil {
		_, bw.err = bw.w.Write(p)
	}
}

func (bw *redisBackupWriter) add(rec redisRecord) error {
	if len(rec.Key) > redisMaxKeyLen {
		return fmt.Errorf("key of %d bytes is too long", len(rec.Key))
	}
	if rec.PTTL < -1 {
		return fmt.Errorf("bad PTTL %d", rec.PTTL)
	}
	if len(rec.Payload) < redisMinPayload || uint64(len(rec.Payload)) > 1<<32-1 {
		return fmt.Errorf("payload of %d bytes cannot be stored", len(rec.Payload))
	}
	var head [1 + 4]byte
	head[0] = redisTagRecord
	binary.BigEndian.PutUint32(head[1:], uint32(len(rec.Key)))
	bw.write(head[:])
	bw.write(rec.Key)
	var mid [8 + 4]byte
	binary.BigEndian.PutUint64(mid[:8], uint64(rec.PTTL))
	binary.BigEndian.PutUint32(mid[8:], uint32(len(rec.Payload)))
	bw.write(mid[:])
	bw.write(rec.Payload)
	bw.n++
	return bw.err
}

func (bw *redisBackupWriter) close() error {
	var end [1 + 8]byte
	end[0] = redisTagEnd
	binary.BigEndian.PutUint64(end[1:], bw.n)
	bw.write(end[:])
	if bw.err != nil {
		return bw.err
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], bw.crc.Sum32())
	bw.write(sum[:])
	return bw.err
}

// readRedisBackup parses a whole backup, calling fn (if not nil) for each
// record, and fails on anything malformed, truncated or trailing.
func readRedisBackup(r io.Reader, fn func(redisRecord) error) error {
	br := &redisBackupReader{br: bufio.NewReaderSize(r, 64<<10), crc: crc32.NewIEEE()}
	magic, err := br.readFull("header", int64(len(redisBackupMagic)))
	if err != nil || string(magic) != redisBackupMagic {
		return errors.New("redis backup: not a gitreceive redis backup (bad header)")
	}
	var n uint64
	for {
		tag, err := br.readFull("record tag", 1)
		if err != nil {
			return err
		}
		switch tag[0] {
		case redisTagRecord:
		case redisTagEnd:
			return br.readEnd(n)
		default:
			return fmt.Errorf("redis backup: bad record tag %q at byte %d", tag[0], br.off-1)
		}
		rec, err := br.readRecord()
		if err != nil {
			return err
		}
		n++
		if fn != nil {
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
}

// redisBackupReader reads a backup's fields, keeping the checksum of every
// byte consumed so far and the offset for error messages.
type redisBackupReader struct {
	br  *bufio.Reader
	crc hash.Hash32
	off int64
}

// readFull reads the n bytes of the field what.
func (r *redisBackupReader) readFull(what string, n int64) ([]byte, error) {
	// Grows with the data, not with the declared length.
	b, err := io.ReadAll(io.LimitReader(r.br, n))
	if err != nil {
		return nil, fmt.Errorf("redis backup: reading %s at byte %d: %w", what, r.off, err)
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("redis backup: truncated in %s at byte %d", what, r.off+int64(len(b)))
	}
	r.off += n
	r.crc.Write(b)
	return b, nil
}

// readEnd reads what follows the end tag: the count of records (n were
// read), the checksum, and nothing more.
func (r *redisBackupReader) readEnd(n uint64) error {
	count, err := r.readFull("end record", 8)
	if err != nil {
		return err
	}
	if got := binary.BigEndian.Uint64(count); got != n {
		return fmt.Errorf("redis backup: end record counts %d keys, but there are %d", got, n)
	}
	want := r.crc.Sum32() // everything before the checksum
	sum, err := r.readFull("checksum", 4)
	if err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(sum); got != want {
		return fmt.Errorf("redis backup: checksum %08x does not match the content's %08x", got, want)
	}
	if _, err := r.br.ReadByte(); err == nil {
		return fmt.Errorf("redis backup: trailing data after the end record at byte %d", r.off)
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("redis backup: %w", err)
	}
	return nil
}

// readRecord reads one record after its tag: key, PTTL and DUMP payload.
func (r *redisBackupReader) readRecord() (redisRecord, error) {
	klen, err := r.readFull("key length", 4)
	if err != nil {
		return redisRecord{}, err
	}
	kl := int64(binary.BigEndian.Uint32(klen))
	if kl > redisMaxKeyLen {
		return redisRecord{}, fmt.Errorf("redis backup: key length %d at byte %d is over Redis' limit", kl, r.off-4)
	}
	key, err := r.readFull("key", kl)
	if err != nil {
		return redisRecord{}, err
	}
	ttl, err := r.readFull("PTTL", 8)
	if err != nil {
		return redisRecord{}, err
	}
	pttl := int64(binary.BigEndian.Uint64(ttl))
	if pttl < -1 {
		return redisRecord{}, fmt.Errorf("redis backup: bad PTTL %d for key %q", pttl, truncateKey(key))
	}
	plen, err := r.readFull("payload length", 4)
	if err != nil {
		return redisRecord{}, err
	}
	pl := int64(binary.BigEndian.Uint32(plen))
	if pl < redisMinPayload {
		return redisRecord{}, fmt.Errorf("redis backup: payload of key %q is %d bytes, too short", truncateKey(key), pl)
	}
	payload, err := r.readFull("payload", pl)
	if err != nil {
		return redisRecord{}, err
	}
	if err := checkDumpPayload(payload); err != nil {
		return redisRecord{}, fmt.Errorf("redis backup: key %q: %w", truncateKey(key), err)
	}
	return redisRecord{Key: key, PTTL: pttl, Payload: payload}, nil
}

func truncateKey(k []byte) string {
	if len(k) > 64 {
		return string(k[:64]) + "..."
	}
	return string(k)
}
