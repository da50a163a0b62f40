package host

import (
	"context"
	"fmt"
	"os"
)

// fileDisk is sector I/O on an open file: a block device, or an image file
// standing in for one.
type fileDisk struct {
	f           *os.File
	blockDevice bool
}

func (d *fileDisk) ReadAt(_ context.Context, p []byte, off int64) error {
	_, err := d.f.ReadAt(p, off)
	return err
}

func (d *fileDisk) WriteAt(_ context.Context, p []byte, off int64) error {
	_, err := d.f.WriteAt(p, off)
	return err
}

func (d *fileDisk) Zero(ctx context.Context, off, n int64) error {
	return d.WriteAt(ctx, make([]byte, n), off)
}

func (d *fileDisk) Flush(context.Context) error {
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", d.f.Name(), err)
	}
	if d.blockDevice {
		if err := flushBuffers(d.f); err != nil {
			return fmt.Errorf("BLKFLSBUF %s: %w", d.f.Name(), err)
		}
	}
	return nil
}

func (d *fileDisk) Close() error { return d.f.Close() }

// NewImageDisk opens an image file for sector I/O: fixture and lab hosts.
func NewImageDisk(path string, write bool) (Disk, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: image %s is not a regular file", ErrNotAllowed, path)
	}
	return &fileDisk{f: f}, nil
}
