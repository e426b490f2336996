package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	bolt "go.etcd.io/bbolt"
)

// printBuckets prints, for each top-level bucket, its keys, the pages it
// takes, how full they are and what that is per ledger record.
func printBuckets(w io.Writer, path string, records int) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "bucket\tkeys\tallocated\tin use\tfill\tbytes/record\t\n")
	err = db.View(func(tx *bolt.Tx) error {
		fmt.Fprintf(tw, "(page size)\t\t%d\t\t\t\t\n", db.Info().PageSize)
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			st := b.Stats()
			alloc := st.BranchAlloc + st.LeafAlloc
			inuse := st.BranchInuse + st.LeafInuse + st.InlineBucketInuse
			fill := 0.0
			if alloc > 0 {
				fill = 100 * float64(inuse) / float64(alloc)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f%%\t%.0f\t\n", name, st.KeyN, alloc, inuse, fill, float64(alloc)/float64(max(records, 1)))
			return nil
		})
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}
