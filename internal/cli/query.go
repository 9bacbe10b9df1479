package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/query"
)

type queryOptions struct {
	Query string
	Max   int
}

func newQueryCmd(f *Factory, runF func(*queryOptions) error) *cobra.Command {
	opts := &queryOptions{}
	cmd := &cobra.Command{
		Use:   "query QUERY",
		Short: "Query device and module twins with IoT Hub's query language",
		Long: `Run a query in IoT Hub's query language on the hub and print what it returns,
following the hub's pages to the end (or to --max items).

  SELECT * | item [AS alias], … | COUNT() [AS alias]
  FROM devices | devices.modules
  [WHERE condition] [GROUP BY path, …]

A condition reads any twin property (deviceId, moduleId, status, tags.*,
properties.desired.*, properties.reported.*, capabilities.iotEdge, $metadata…)
with = != <> < > <= >= IN NIN AND OR NOT and IS_DEFINED, IS_NULL, IS_BOOL,
IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY, IS_PRIMITIVE, STARTSWITH, ENDSWITH.
A property a twin lacks never matches: tags.x != 'a' skips twins without
tags.x. docs/hub-api.md describes the language.

The table shows one twin per row for SELECT * (device, module, status,
versions, tags), else one column per item of the SELECT list. -o json|yaml
print the items as the hub returned them.`,
		Example: `  outpost query "SELECT * FROM devices WHERE tags.location.plant = 'Hannover01'"
  outpost query "SELECT deviceId, moduleId FROM devices.modules WHERE properties.reported.runtimeStatus = 'failed'"
  outpost query "SELECT properties.reported.firmware AS fw, COUNT() AS n FROM devices.modules GROUP BY properties.reported.firmware"
  outpost query "SELECT deviceId FROM devices" --max 10 -o json`,
		Args: exactArgs(1, "one query (quote it)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Query = args[0]
			if opts.Max < 0 {
				return flagErrorf("invalid --max %d: give a number of items, or 0 for all", opts.Max)
			}
			if runF != nil {
				return runF(opts)
			}
			return queryRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().IntVar(&opts.Max, "max", 0, "print at most `N` items (0: all)")
	return cmd
}

func queryRun(ctx context.Context, f *Factory, opts *queryOptions) error {
	// Parsed here first, to point at what is wrong before asking the hub.
	q, err := query.Parse(opts.Query)
	if err != nil {
		return queryError(opts.Query, err)
	}
	c, err := f.HubClient()
	if err != nil {
		return err
	}
	items, _, err := c.Query(ctx, opts.Query, opts.Max)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	if len(items) == 0 && f.outputFormat() == "table" {
		f.status("no twins match")
		return nil
	}
	return f.Print(items, func(w io.Writer) error {
		if q.Star() {
			return twinTable(w, items, q.From() == query.Modules)
		}
		var cols []string
		for _, p := range q.Projections() {
			cols = append(cols, p.Name)
		}
		return rowTable(w, items, cols)
	})
}

// queryError shows where a query that does not parse went wrong.
func queryError(q string, err error) error {
	var qe *query.Error
	if !errors.As(err, &qe) || strings.ContainsAny(q, "\n\r\t") {
		return fmt.Errorf("query: %w", err)
	}
	return fmt.Errorf("query: %w\n  %s\n  %s^", err, q, strings.Repeat(" ", len([]rune(q[:min(qe.Pos, len(q))]))))
}

// twinTable prints whole twins, one a row.
func twinTable(w io.Writer, items []json.RawMessage, modules bool) error {
	header := []string{"DEVICE"}
	if modules {
		header = append(header, "MODULE")
	}
	t := NewTable(append(header, "STATUS", "DESIRED", "REPORTED", "TAGS")...)
	for _, it := range items {
		var tw struct {
			DeviceID   string          `json:"deviceId"`
			ModuleID   string          `json:"moduleId"`
			Status     string          `json:"status"`
			Tags       json.RawMessage `json:"tags"`
			Properties struct {
				Desired, Reported struct {
					Version *int64 `json:"$version"`
				}
			} `json:"properties"`
		}
		if err := json.Unmarshal(it, &tw); err != nil {
			return fmt.Errorf("query: a twin the hub returned: %w", err)
		}
		row := []string{tw.DeviceID}
		if modules {
			row = append(row, tw.ModuleID)
		}
		t.Row(append(row, orDash(tw.Status), sectionVersion(tw.Properties.Desired.Version), sectionVersion(tw.Properties.Reported.Version), cell(tw.Tags))...)
	}
	return t.Write(w)
}

func sectionVersion(v *int64) string {
	if v == nil {
		return "-"
	}
	return "v" + strconv.FormatInt(*v, 10)
}

// rowTable prints rows of projections or aggregates, a column per item of
// the SELECT list.
func rowTable(w io.Writer, items []json.RawMessage, cols []string) error {
	t := NewTable(cols...)
	for _, it := range items {
		var row map[string]json.RawMessage
		if err := json.Unmarshal(it, &row); err != nil {
			return fmt.Errorf("query: a row the hub returned: %w", err)
		}
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = cell(row[c])
		}
		t.Row(cells...)
	}
	return t.Write(w)
}

// cell shows a JSON value in a table: strings bare, other values as JSON,
// a missing one as "-".
func cell(v json.RawMessage) string {
	if len(v) == 0 {
		return "-"
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}
