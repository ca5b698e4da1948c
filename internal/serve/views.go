package serve

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/quiver-ml/quiver/features"
)

type viewJSON struct {
	Name        string        `json:"name"`
	Version     int           `json:"version"`
	Ref         string        `json:"ref"`
	Fingerprint string        `json:"fingerprint"`
	Entity      string        `json:"entity"`
	JoinKeys    []string      `json:"join_keys"`
	Source      string        `json:"source"`
	Filter      string        `json:"filter,omitempty"`
	TTL         string        `json:"ttl,omitempty"`
	Latest      bool          `json:"latest"` // the version view:feature resolves to
	Features    []featureJSON `json:"features"`
}

type featureJSON struct {
	Name        string `json:"name"`
	Agg         string `json:"agg"`
	Field       string `json:"field,omitempty"`
	Window      string `json:"window,omitempty"`
	Granularity string `json:"granularity,omitempty"`
}

type serviceJSON struct {
	Name     string         `json:"name"`
	Features []string       `json:"features"`
	OnDemand []onDemandJSON `json:"on_demand,omitempty"`
}

type onDemandJSON struct {
	Name string `json:"name"`
	Expr string `json:"expr"`
}

// featureViews answers GET /v1/feature-views: every view version, with its
// fingerprint, and the feature services.
func (s *Server) featureViews(c echo.Context) error {
	out := struct {
		Project  string        `json:"project"`
		Views    []viewJSON    `json:"feature_views"`
		Services []serviceJSON `json:"feature_services"`
	}{Project: s.defs.Project, Views: []viewJSON{}, Services: []serviceJSON{}}
	for _, v := range s.defs.Views {
		vj := viewJSON{
			Name: v.Name, Version: v.Version, Ref: v.Ref(), Fingerprint: v.Fingerprint(s.defs),
			Entity: v.Entity, JoinKeys: s.defs.Entity(v.Entity).JoinKeys, Source: v.Source, Filter: v.Filter,
			Latest: s.defs.View(v.Name, 0) == v,
		}
		if v.TTL > 0 {
			vj.TTL = features.FormatDuration(v.TTL)
		}
		for _, f := range v.Features {
			fj := featureJSON{Name: f.Name, Agg: string(f.Agg), Field: f.Field}
			if f.Window > 0 {
				fj.Window, fj.Granularity = features.FormatDuration(f.Window), features.FormatDuration(f.Granularity)
			}
			vj.Features = append(vj.Features, fj)
		}
		out.Views = append(out.Views, vj)
	}
	for _, svc := range s.defs.Services {
		sj := serviceJSON{Name: svc.Name}
		for _, r := range svc.Features {
			sj.Features = append(sj.Features, r.String())
		}
		for _, o := range svc.OnDemand {
			sj.OnDemand = append(sj.OnDemand, onDemandJSON{Name: o.Name, Expr: o.Expr})
		}
		out.Services = append(out.Services, sj)
	}
	return c.JSON(http.StatusOK, out)
}
