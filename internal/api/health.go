package api

import (
	"net/http"

	"github.com/amphi-audio/amphi"
)

// handleHealth tells a space's host the server's ops verdict (healthy,
// overloaded, under_attack, failing_internally) for the console, without
// the evidence /ops shows on the ops address.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Verdict == nil {
		s.error(w, r, amphi.Errorf(amphi.ENotFound, "this server has no ops verdict"))
		return
	}
	if _, err := s.authorize(r, r.PathValue("id"), amphi.RoleHost); err != nil {
		s.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"verdict": s.cfg.Verdict()})
}
