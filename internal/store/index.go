package store

import (
	"slices"
	"sort"
)

// keyList is a sorted set of keys in chunks, so that adding or removing one key among
// 100k moves a few hundred strings rather than all of them.
type keyList struct {
	chunks [][]string // each sorted and non-empty; all of chunk i < all of chunk i+1
}

const maxChunk = 512

// newKeyList returns a keyList holding sorted, which must be sorted and free of duplicates.
func newKeyList(sorted []string) keyList {
	var l keyList
	for len(sorted) > 0 {
		n := min(len(sorted), maxChunk/2)
		l.chunks = append(l.chunks, slices.Clone(sorted[:n]))
		sorted = sorted[n:]
	}
	return l
}

// find returns the index of the chunk where key is or would be.
func (l *keyList) find(key string) int {
	i := sort.Search(len(l.chunks), func(i int) bool {
		c := l.chunks[i]
		return c[len(c)-1] >= key
	})
	return min(i, len(l.chunks)-1)
}

func (l *keyList) insert(key string) {
	if len(l.chunks) == 0 {
		l.chunks = [][]string{{key}}
		return
	}
	ci := l.find(key)
	c := l.chunks[ci]
	j, found := slices.BinarySearch(c, key)
	if found {
		return
	}
	c = slices.Insert(c, j, key)
	if len(c) <= maxChunk {
		l.chunks[ci] = c
		return
	}
	half := len(c) / 2
	l.chunks[ci] = slices.Clone(c[:half])
	l.chunks = slices.Insert(l.chunks, ci+1, slices.Clone(c[half:]))
}

func (l *keyList) remove(key string) {
	if len(l.chunks) == 0 {
		return
	}
	ci := l.find(key)
	c := l.chunks[ci]
	j, found := slices.BinarySearch(c, key)
	if !found {
		return
	}
	c = slices.Delete(c, j, j+1)
	if len(c) == 0 {
		l.chunks = slices.Delete(l.chunks, ci, ci+1)
		return
	}
	l.chunks[ci] = c
}

// ascend calls fn for each key >= from in order until fn returns false.
func (l *keyList) ascend(from string, fn func(key string) bool) {
	if len(l.chunks) == 0 {
		return
	}
	ci := l.find(from)
	j, _ := slices.BinarySearch(l.chunks[ci], from)
	for ; ci < len(l.chunks); ci, j = ci+1, 0 {
		for _, k := range l.chunks[ci][j:] {
			if !fn(k) {
				return
			}
		}
	}
}
