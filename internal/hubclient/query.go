package hubclient

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
)

// QueryPage is one page of the answer to a query.
type QueryPage struct {
	Items        []json.RawMessage // twins, or rows of projections and aggregates
	ItemType     string            // x-ms-item-type: "twin" or "raw"
	Continuation string            // x-ms-continuation: "" on the last page
}

// QueryPage runs IoT Hub's query language (POST /devices/query) for one page
// of at most pageSize items (0: the hub's default), from continuation ("" for
// the first page).
func (c *Client) QueryPage(ctx context.Context, query string, pageSize int, continuation string) (*QueryPage, error) {
	header := http.Header{}
	if pageSize > 0 {
		header.Set("x-ms-max-item-count", strconv.Itoa(pageSize))
	}
	if continuation != "" {
		header.Set("x-ms-continuation", continuation)
	}
	var raw []byte
	h, err := c.do(ctx, http.MethodPost, "/devices/query", nil, map[string]string{"query": query}, header, &raw)
	if err != nil {
		return nil, err
	}
	p := &QueryPage{ItemType: h.Get("x-ms-item-type"), Continuation: h.Get("x-ms-continuation")}
	if err := json.Unmarshal(raw, &p.Items); err != nil {
		return nil, &Error{Message: "query: the hub's answer is not a JSON array: " + err.Error()}
	}
	return p, nil
}

// Query runs a query to its end, following continuations, and returns at
// most max items (0: all of them) and their item type.
func (c *Client) Query(ctx context.Context, query string, max int) (items []json.RawMessage, itemType string, err error) {
	cont := ""
	for {
		size := 0
		if max > 0 {
			size = min(max-len(items), 1000)
		}
		p, err := c.QueryPage(ctx, query, size, cont)
		if err != nil {
			return nil, "", err
		}
		items, itemType = append(items, p.Items...), p.ItemType
		if p.Continuation == "" || max > 0 && len(items) >= max {
			if max > 0 && len(items) > max {
				items = items[:max]
			}
			return items, itemType, nil
		}
		cont = p.Continuation
	}
}
