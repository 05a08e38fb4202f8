package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// The errors of a promotion the Source reports with a status of their
// own: the volume is not served here (404), or it is not a follower
// (409: this node is already its primary, or was fenced).
var (
	ErrNoSuchVolume = errors.New("admin: no such volume here")
	ErrNotFollower  = errors.New("admin: not a follower")
)

// PromoteResult is the answer of a promotion: the volume is read-write,
// its records numbered under Term from LSN on.
type PromoteResult struct {
	Volume string `json:"volume"`
	Dir    string `json:"dir"`
	Term   uint64 `json:"term"`
	LSN    uint64 `json:"lsn"` // the recovered state's: the first record made is LSN+1
	Error  string `json:"error,omitempty"`
}

// servePromote is POST /promote?volume=V: the Source promotes the
// follower of V and the answer says how it went (JSON PromoteResult):
// 200 once the volume is read-write, 404 when V is not served here, 409
// when it is not a follower, 500 when the promotion failed (the follower
// goes on following: still read-only).
func servePromote(src Source) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST /promote?volume=V", http.StatusMethodNotAllowed)
			return
		}
		vol := r.URL.Query().Get("volume")
		if vol == "" {
			http.Error(w, "POST /promote?volume=V: which volume?", http.StatusBadRequest)
			return
		}
		res, err := src.Promote(r.Context(), vol)
		code := http.StatusOK
		switch {
		case errors.Is(err, ErrNoSuchVolume):
			code = http.StatusNotFound
		case errors.Is(err, ErrNotFollower):
			code = http.StatusConflict
		case err != nil:
			code = http.StatusInternalServerError
		}
		if err != nil {
			res.Volume, res.Error = vol, err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
}

// Promote asks the node whose admin endpoint is at addr (host:port) to
// promote its follower of volume (`spoolfs promote`). It returns once the
// volume is read-write, or the node's reason why not.
func Promote(ctx context.Context, addr, volume string) (PromoteResult, error) {
	var res PromoteResult
	u := "http://" + addr + "/promote?volume=" + url.QueryEscape(volume)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return res, fmt.Errorf("promote: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return res, fmt.Errorf("promote: no admin endpoint answers at %s (is the follower running with --admin %s?): %w", addr, addr, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return res, fmt.Errorf("promote: %s answered %s: %w", addr, resp.Status, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return res, nil
	case http.StatusNotFound:
		return res, &remoteError{"promote: " + res.Error, ErrNoSuchVolume}
	case http.StatusConflict:
		return res, &remoteError{"promote: " + res.Error, ErrNotFollower}
	}
	return res, &remoteError{"promote: " + res.Error, nil}
}

// remoteError is the node's reason, as it wrote it (its text already
// names the sentinel), matching the sentinel its status stands for.
type remoteError struct {
	msg string
	is  error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.is }
