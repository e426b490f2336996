package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// profileSummary is one row of `writ profiles`; never a token.
type profileSummary struct {
	Name        string     `json:"name"`
	Current     bool       `json:"current"`
	Principal   string     `json:"principal"`
	Admin       string     `json:"admin"`
	Issuer      string     `json:"issuer"`
	Status      string     `json:"status"`
	Expires     *time.Time `json:"expires,omitempty"`
	Renewable   bool       `json:"renewable"`
	ProfileFile string     `json:"file"`
}

func profilesCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "profiles",
		Short: "List login profiles: which is current, who they sign in as, when the sign-in expires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			rows, err := listProfiles(envOr("WRIT_PROFILE", "default"), timeNow())
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"profiles": rows})
			}
			if len(rows) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no profiles: sign in with `writ login`")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\tPROFILE\tWHO\tSTATUS\tEXPIRES\tADMIN")
			for _, r := range rows {
				mark, exp, who := "", "-", r.Principal
				if r.Current {
					mark = "*"
				}
				if r.Expires != nil {
					exp = r.Expires.Local().Format(time.RFC3339)
				}
				if who == "" {
					who = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mark, r.Name, who, r.Status, exp, r.Admin)
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

// listProfiles reads every profile; current names the one in use.
func listProfiles(current string, now time.Time) ([]profileSummary, error) {
	dir, err := profileDir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []profileSummary{}, nil
	}
	if err != nil {
		return nil, err
	}
	rows := []profileSummary{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || !profileName.MatchString(name) {
			continue
		}
		p, err := loadProfile(name)
		if err != nil {
			return nil, err
		}
		r := profileSummary{Name: name, Current: name == current, Principal: p.Principal, Admin: p.Admin,
			Issuer: p.Issuer, Renewable: p.RefreshToken != "", ProfileFile: filepath.Join(dir, e.Name())}
		if !p.Expiry.IsZero() && p.Token != "" {
			exp := p.Expiry
			r.Expires = &exp
		}
		switch {
		case p.Token == "":
			r.Status = "logged out"
		case p.Expiry.IsZero():
			r.Status = "signed in"
		case now.Before(p.Expiry):
			r.Status = "valid"
		case r.Renewable:
			r.Status = "expired, renews on next use"
		default:
			r.Status = "expired"
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows, nil
}
