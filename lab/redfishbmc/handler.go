package redfishbmc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

const (
	root         = "/redfish/v1"
	systemsPath  = root + "/Systems"
	managersPath = root + "/Managers"
	managerPath  = managersPath + "/1"
	sessionSvc   = root + "/SessionService"
	sessionsPath = sessionSvc + "/Sessions"
	taskSvc      = root + "/TaskService"
	tasksPath    = taskSvc + "/Tasks"
	monitorsPath = taskSvc + "/TaskMonitors"
	resetSuffix  = "/Actions/ComputerSystem.Reset"
)

// obj is a JSON object under construction.
type obj = map[string]any

func link(path string) obj { return obj{"@odata.id": path} }

func normPath(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	for len(p) > 1 && strings.HasSuffix(p, "/") {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

func (b *BMC) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := normPath(r.URL.Path)
	b.mu.Lock()
	b.requests[r.Method+" "+path]++
	b.total++
	storm := b.stormLeft > 0
	var stormStatus int
	var stormAfter string
	if storm {
		b.stormLeft--
		stormStatus = b.quirks.StormStatus
		if stormStatus == 0 {
			stormStatus = http.StatusServiceUnavailable
		}
		stormAfter = strconv.Itoa(int(math.Ceil(b.quirks.StormRetryAfter.Seconds())))
	}
	b.mu.Unlock()
	b.log.Debug("redfish request", "method", r.Method, "path", path, "storm", storm)

	if storm {
		w.Header().Set("Retry-After", stormAfter)
		writeError(w, stormStatus, "Base.1.8.ServiceTemporarilyUnavailable", "The service is temporarily unavailable; retry in "+stormAfter+" seconds.")
		return
	}

	// Unauthenticated resources.
	switch {
	case path == "/redfish" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, obj{"v1": root + "/"}, "")
		return
	case path == root:
		if !allow(w, r, http.MethodGet) {
			return
		}
		writeJSON(w, http.StatusOK, b.serviceRoot(), "")
		return
	case path == sessionsPath && r.Method == http.MethodPost:
		b.login(w, r)
		return
	}

	if !b.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="redfishbmc"`)
		writeError(w, http.StatusUnauthorized, "Base.1.8.NoValidSession", "Authentication required: no valid session or credentials.")
		return
	}

	switch {
	case path == systemsPath:
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, b.systemsCollection(), "")
		}
	case strings.HasPrefix(path, systemsPath+"/"):
		b.serveSystem(w, r, strings.TrimPrefix(path, systemsPath+"/"))
	case path == managersPath:
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, collection(managersPath, "#ManagerCollection.ManagerCollection", "Manager Collection", managerPath), "")
		}
	case path == managerPath:
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, b.manager(), "")
		}
	case path == managerPath+"/EthernetInterfaces":
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, collection(path, "#EthernetInterfaceCollection.EthernetInterfaceCollection", "Manager Ethernet Interfaces", path+"/1"), "")
		}
	case path == managerPath+"/EthernetInterfaces/1":
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, b.managerNIC(), "")
		}
	case path == sessionSvc:
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, obj{
				"@odata.id":      sessionSvc,
				"@odata.type":    "#SessionService.v1_1_8.SessionService",
				"Id":             "SessionService",
				"Name":           "Session Service",
				"ServiceEnabled": true,
				"SessionTimeout": 1800,
				"Sessions":       link(sessionsPath),
			}, "")
		}
	case path == sessionsPath:
		if allow(w, r, http.MethodGet, http.MethodPost) {
			writeJSON(w, http.StatusOK, b.sessionsCollection(), "")
		}
	case strings.HasPrefix(path, sessionsPath+"/"):
		b.serveSession(w, r, strings.TrimPrefix(path, sessionsPath+"/"))
	case strings.HasPrefix(path, monitorsPath+"/"):
		if allow(w, r, http.MethodGet) {
			b.pollTask(w, strings.TrimPrefix(path, monitorsPath+"/"))
		}
	case strings.HasPrefix(path, tasksPath+"/"):
		if allow(w, r, http.MethodGet) {
			b.getTask(w, strings.TrimPrefix(path, tasksPath+"/"))
		}
	default:
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The resource at "+path+" was not found.")
	}
}

// allow answers 405 unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "Base.1.8.OperationNotAllowed", r.Method+" is not allowed on this resource.")
	return false
}

func (b *BMC) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, s := range b.sessions {
			if equalSecret(s.token, tok) {
				return true
			}
		}
		return false
	}
	if u, p, ok := r.BasicAuth(); ok {
		return equalSecret(u, b.cfg.Username) && equalSecret(p, b.cfg.Password)
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any, etag string) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("OData-Version", "4.0")
	if etag != "" {
		h.Set("ETag", etag)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError writes a Redfish error body.
func writeError(w http.ResponseWriter, status int, messageID, message string) {
	writeJSON(w, status, obj{"error": obj{
		"code":    messageID,
		"message": message,
		"@Message.ExtendedInfo": []obj{{
			"@odata.type": "#Message.v1_1_1.Message",
			"MessageId":   messageID,
			"Message":     message,
			"Severity":    "Warning",
		}},
	}}, "")
}

func collection(path, odataType, name string, members ...string) obj {
	ms := make([]obj, 0, len(members))
	for _, m := range members {
		ms = append(ms, link(m))
	}
	return obj{
		"@odata.id":           path,
		"@odata.type":         odataType,
		"Name":                name,
		"Members@odata.count": len(ms),
		"Members":             ms,
	}
}

func (b *BMC) serviceRoot() obj {
	return obj{
		"@odata.id":      root + "/",
		"@odata.type":    "#ServiceRoot.v1_15_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": "1.17.0",
		"UUID":           "7c2e6c1a-4b0e-4a8e-9f5c-0000" + fmt.Sprintf("%08x", b.port),
		"Systems":        link(systemsPath),
		"Managers":       link(managersPath),
		"SessionService": link(sessionSvc),
		"Links":          obj{"Sessions": link(sessionsPath)},
	}
}

func (b *BMC) systemsCollection() obj {
	var paths []string
	for _, m := range b.machines {
		paths = append(paths, systemsPath+"/"+m.id)
	}
	return collection(systemsPath, "#ComputerSystemCollection.ComputerSystemCollection", "Computer System Collection", paths...)
}

func (b *BMC) serveSystem(w http.ResponseWriter, r *http.Request, rest string) {
	id, sub, _ := strings.Cut(rest, "/")
	m := b.MachineFor(id)
	if m == nil {
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The resource at "+systemsPath+"/"+rest+" was not found.")
		return
	}
	switch "/" + sub {
	case "/":
		if !allow(w, r, http.MethodGet, http.MethodPatch) {
			return
		}
		if r.Method == http.MethodPatch {
			b.patchSystem(w, r, m)
			return
		}
		q := b.Quirks()
		m.mu.Lock()
		body, etag := b.systemLocked(m, q)
		m.mu.Unlock()
		writeJSON(w, http.StatusOK, body, etag)
	case resetSuffix:
		if allow(w, r, http.MethodPost) {
			b.resetSystem(w, r, m)
		}
	default:
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "The resource at "+systemsPath+"/"+rest+" was not found.")
	}
}

// systemLocked renders m; the caller holds m.mu.
func (b *BMC) systemLocked(m *Machine, q Quirks) (obj, string) {
	path := systemsPath + "/" + m.id
	power := "Off"
	if m.powered {
		power = "On"
		if q.ReportTransitions && m.shuttingDownLocked() {
			power = "PoweringOff"
		}
	}
	boot := obj{
		"BootSourceOverrideTarget":                          m.boot.Target,
		"BootSourceOverrideTarget@Redfish.AllowableValues":  b.cfg.BootTargets,
		"BootSourceOverrideEnabled":                         m.boot.Enabled,
		"BootSourceOverrideEnabled@Redfish.AllowableValues": enabledValues(q),
	}
	if !b.cfg.NoBootMode {
		boot["BootSourceOverrideMode"] = m.boot.Mode
		if !q.RejectMode {
			boot["BootSourceOverrideMode@Redfish.AllowableValues"] = b.cfg.BootModes
		}
	}
	etag := m.etagLocked()
	sys := obj{
		"@odata.id":    path,
		"@odata.type":  "#ComputerSystem.v1_20_0.ComputerSystem",
		"@odata.etag":  etag,
		"Id":           m.id,
		"Name":         "System " + m.id,
		"SystemType":   "Physical",
		"Manufacturer": b.cfg.Manufacturer,
		"Model":        b.cfg.Model,
		"BiosVersion":  b.cfg.BIOSVersion,
		"PowerState":   power,
		"Status":       obj{"State": "Enabled", "Health": "OK"},
		"Boot":         boot,
		"Actions": obj{"#ComputerSystem.Reset": obj{
			"target":                            path + resetSuffix,
			"ResetType@Redfish.AllowableValues": b.cfg.ResetTypes,
		}},
		"Links": obj{"ManagedBy": []obj{link(managerPath)}},
	}
	if m.uuid != "" {
		sys["UUID"] = m.uuid
	}
	if m.serial != "" {
		sys["SerialNumber"] = m.serial
	}
	return sys, etag
}

// enabledValues is BootSourceOverrideEnabled's allowable values.
func enabledValues(q Quirks) []string {
	if q.EnabledOnceOnly {
		return []string{EnabledDisabled, EnabledOnce}
	}
	return []string{EnabledDisabled, EnabledOnce, EnabledContinuous}
}

// normETag strips a weak prefix and quotes for comparison.
func normETag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	return strings.Trim(s, `"`)
}

func etagMatches(ifMatch, current string) bool {
	for _, t := range strings.Split(ifMatch, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || normETag(t) == normETag(current) {
			return true
		}
	}
	return false
}

// hasAllowableValues reports whether a JSON value contains an
// @Redfish.AllowableValues annotation at any depth.
func hasAllowableValues(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if strings.HasSuffix(k, "@Redfish.AllowableValues") || hasAllowableValues(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if hasAllowableValues(e) {
				return true
			}
		}
	}
	return false
}

func (b *BMC) patchSystem(w http.ResponseWriter, r *http.Request, m *Machine) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body could not be read.")
		return
	}
	var body map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body is not a JSON object: "+err.Error())
		return
	}
	q := b.Quirks()

	m.mu.Lock()
	current := m.etagLocked()
	ifMatch := r.Header.Get("If-Match")
	switch {
	case ifMatch != "" && !etagMatches(ifMatch, current):
		m.mu.Unlock()
		writeError(w, http.StatusPreconditionFailed, "Base.1.8.PreconditionFailed", "The ETag in If-Match does not match the resource's current ETag.")
		return
	case ifMatch == "" && q.RequireIfMatch:
		m.mu.Unlock()
		writeError(w, http.StatusPreconditionRequired, "Base.1.8.PreconditionRequired", "This service requires an If-Match header on PATCH.")
		return
	}
	if q.RejectAllowableValues && hasAllowableValues(body) {
		m.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Base.1.8.PropertyNotWritable", "The request contains @Redfish.AllowableValues, which is read-only.")
		return
	}
	next, status, msgID, msg := b.applyPatch(m.boot, body, q)
	if status != 0 {
		m.mu.Unlock()
		writeError(w, status, msgID, msg)
		return
	}
	if q.SilentlyRevert {
		m.mu.Unlock()
		writeJSON(w, http.StatusOK, obj{"@Message.ExtendedInfo": []obj{{
			"MessageId": "Base.1.8.Success", "Message": "The request completed successfully.", "Severity": "OK",
		}}}, "")
		return
	}
	if next != m.boot {
		m.boot = next
		m.gen++
	}
	etag := m.etagLocked()
	m.mu.Unlock()
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusNoContent)
}

// applyPatch validates a system PATCH body and returns the new boot
// settings, or an HTTP status and Redfish message when it is refused.
func (b *BMC) applyPatch(cur BootSettings, body map[string]any, q Quirks) (BootSettings, int, string, string) {
	next := cur
	for k, v := range body {
		if strings.HasPrefix(k, "@") || strings.Contains(k, "@odata.") {
			continue
		}
		if k != "Boot" {
			return cur, http.StatusBadRequest, "Base.1.8.PropertyNotWritable", "The property " + k + " is read-only or unknown."
		}
		if q.BootReadOnly {
			return cur, http.StatusBadRequest, "Base.1.12.PropertyNotWritable", "The property Boot is a read-only property and cannot be assigned a value."
		}
		boot, ok := v.(map[string]any)
		if !ok {
			return cur, http.StatusBadRequest, "Base.1.8.PropertyValueTypeError", "Boot must be an object."
		}
		sawMode, sawOverride := false, false
		for bk, bv := range boot {
			if strings.Contains(bk, "@") {
				continue // annotations are ignored unless a quirk refuses them
			}
			s, ok := bv.(string)
			if !ok {
				return cur, http.StatusBadRequest, "Base.1.8.PropertyValueTypeError", "Boot." + bk + " must be a string."
			}
			switch bk {
			case "BootSourceOverrideTarget":
				if !slices.Contains(b.cfg.BootTargets, s) {
					return cur, http.StatusBadRequest, "Base.1.8.PropertyValueNotInList", fmt.Sprintf("The value %q for BootSourceOverrideTarget is not in the list of acceptable values %v.", s, b.cfg.BootTargets)
				}
				next.Target, sawOverride = s, true
			case "BootSourceOverrideEnabled":
				allowed := enabledValues(q)
				if !slices.Contains(allowed, s) {
					return cur, http.StatusBadRequest, "Base.1.8.PropertyValueNotInList", fmt.Sprintf("The value %q for BootSourceOverrideEnabled is not in the list of acceptable values %v.", s, allowed)
				}
				next.Enabled, sawOverride = s, true
			case "BootSourceOverrideMode":
				if b.cfg.NoBootMode {
					return cur, http.StatusBadRequest, "Base.1.8.PropertyUnknown", "The property BootSourceOverrideMode is not known to this service."
				}
				if q.RejectMode {
					return cur, http.StatusBadRequest, "Base.1.8.PropertyNotWritable", "The property BootSourceOverrideMode is read-only."
				}
				if !slices.Contains(b.cfg.BootModes, s) {
					return cur, http.StatusBadRequest, "Base.1.8.PropertyValueNotInList", fmt.Sprintf("The value %q for BootSourceOverrideMode is not in the list of acceptable values %v.", s, b.cfg.BootModes)
				}
				next.Mode, sawMode = s, true
			default:
				return cur, http.StatusBadRequest, "Base.1.8.PropertyUnknown", "The property Boot." + bk + " is not writable on this service."
			}
		}
		if q.RequireMode && sawOverride && !sawMode {
			return cur, http.StatusBadRequest, "Base.1.8.PropertyMissing", "BootSourceOverrideMode must be sent together with the boot override."
		}
	}
	return next, 0, "", ""
}

func (b *BMC) resetSystem(w http.ResponseWriter, r *http.Request, m *Machine) {
	var body struct {
		ResetType *string
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body is not valid JSON: "+err.Error())
		return
	}
	if body.ResetType == nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterMissing", "The action ComputerSystem.Reset requires the parameter ResetType.")
		return
	}
	rt := *body.ResetType
	if !slices.Contains(b.cfg.ResetTypes, rt) {
		writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterNotSupported", fmt.Sprintf("The parameter ResetType value %q is not supported; allowed: %v.", rt, b.cfg.ResetTypes))
		return
	}
	if b.Quirks().Task202 {
		b.mu.Lock()
		b.nextID++
		t := &task{id: strconv.Itoa(b.nextID), machine: m, resetType: rt, pollsLeft: b.cfg.TaskPolls}
		b.tasks[t.id] = t
		b.mu.Unlock()
		w.Header().Set("Location", monitorsPath+"/"+t.id)
		writeJSON(w, http.StatusAccepted, taskBody(t.id, false), "")
		return
	}
	b.mu.Lock()
	conflict := b.quirks.ConflictResets > 0
	if conflict {
		b.quirks.ConflictResets--
	}
	b.mu.Unlock()
	if conflict {
		writeError(w, http.StatusConflict, "Base.1.8.ResourceInUse", "The change could not be made because the system is transitioning.")
		return
	}
	if b.Quirks().ConflictDuringTransition {
		m.mu.Lock()
		busy := m.shuttingDownLocked()
		m.mu.Unlock()
		if busy {
			writeError(w, http.StatusConflict, "Base.1.8.ResourceInUse", "The change could not be made because the system is powering off.")
			return
		}
	}
	m.reset(rt, b.cfg.GracefulShutdownDelay)
	w.WriteHeader(http.StatusNoContent)
}

func taskBody(id string, done bool) obj {
	state, pct := "Running", 50
	if done {
		state, pct = "Completed", 100
	}
	return obj{
		"@odata.id":       tasksPath + "/" + id,
		"@odata.type":     "#Task.v1_7_0.Task",
		"Id":              id,
		"Name":            "ComputerSystem.Reset task",
		"TaskState":       state,
		"TaskStatus":      "OK",
		"PercentComplete": pct,
		"TaskMonitor":     monitorsPath + "/" + id,
		"Messages":        []obj{},
	}
}

// pollTask answers a task monitor: 202 for the first TaskPolls polls,
// then the reset happens and the monitor answers 200 with the completed
// task.
func (b *BMC) pollTask(w http.ResponseWriter, id string) {
	b.mu.Lock()
	t := b.tasks[id]
	if t == nil {
		b.mu.Unlock()
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "No task monitor "+id+".")
		return
	}
	run := false
	if !t.done {
		if t.pollsLeft > 0 {
			t.pollsLeft--
		} else {
			t.done, run = true, true
		}
	}
	done := t.done
	b.mu.Unlock()
	if run {
		t.machine.reset(t.resetType, b.cfg.GracefulShutdownDelay)
	}
	if !done {
		w.Header().Set("Location", monitorsPath+"/"+id)
		writeJSON(w, http.StatusAccepted, taskBody(id, false), "")
		return
	}
	writeJSON(w, http.StatusOK, taskBody(id, true), "")
}

func (b *BMC) getTask(w http.ResponseWriter, id string) {
	b.mu.Lock()
	t := b.tasks[id]
	var done bool
	if t != nil {
		done = t.done
	}
	b.mu.Unlock()
	if t == nil {
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "No task "+id+".")
		return
	}
	writeJSON(w, http.StatusOK, taskBody(id, done), "")
}

func (b *BMC) manager() obj {
	var servers []obj
	for _, m := range b.machines {
		servers = append(servers, link(systemsPath+"/"+m.id))
	}
	return obj{
		"@odata.id":          managerPath,
		"@odata.type":        "#Manager.v1_10_0.Manager",
		"Id":                 "1",
		"Name":               "Manager",
		"ManagerType":        "BMC",
		"Model":              b.cfg.Model + " BMC",
		"FirmwareVersion":    b.cfg.FirmwareVersion,
		"Status":             obj{"State": "Enabled", "Health": "OK"},
		"EthernetInterfaces": link(managerPath + "/EthernetInterfaces"),
		"Links":              obj{"ManagerForServers": servers},
	}
}

func (b *BMC) managerNIC() obj {
	return obj{
		"@odata.id":           managerPath + "/EthernetInterfaces/1",
		"@odata.type":         "#EthernetInterface.v1_6_0.EthernetInterface",
		"Id":                  "1",
		"Name":                "Manager Ethernet Interface",
		"InterfaceEnabled":    true,
		"LinkStatus":          "LinkUp",
		"MACAddress":          b.cfg.MACAddress,
		"PermanentMACAddress": b.cfg.MACAddress,
		"IPv4Addresses": []obj{{
			"Address":       b.cfg.IPAddress,
			"SubnetMask":    "255.0.0.0",
			"AddressOrigin": "Static",
		}},
	}
}

func (b *BMC) sessionsCollection() obj {
	b.mu.Lock()
	var paths []string
	for id := range b.sessions {
		paths = append(paths, sessionsPath+"/"+id)
	}
	b.mu.Unlock()
	slices.Sort(paths)
	return collection(sessionsPath, "#SessionCollection.SessionCollection", "Session Collection", paths...)
}

func sessionBody(s *session) obj {
	return obj{
		"@odata.id":   sessionsPath + "/" + s.id,
		"@odata.type": "#Session.v1_5_0.Session",
		"Id":          s.id,
		"Name":        "User Session",
		"UserName":    s.user,
	}
}

func (b *BMC) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UserName string
		Password string
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "The request body is not valid JSON.")
		return
	}
	if !equalSecret(body.UserName, b.cfg.Username) || !equalSecret(body.Password, b.cfg.Password) {
		writeError(w, http.StatusUnauthorized, "Base.1.8.InsufficientPrivilege", "Invalid username or password.")
		return
	}
	b.mu.Lock()
	limit := b.quirks.SessionLimit
	if limit <= 0 {
		limit = DefaultSessionLimit
	}
	if len(b.sessions) >= limit {
		b.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "Base.1.8.SessionLimitExceeded", fmt.Sprintf("The session establishment failed: %d sessions are open, the limit.", limit))
		return
	}
	b.nextID++
	s := &session{id: strconv.Itoa(b.nextID), token: randomHex(16), user: body.UserName}
	b.sessions[s.id] = s
	b.mu.Unlock()
	q := b.Quirks()
	w.Header().Set("X-Auth-Token", s.token)
	if !q.SessionNoLocation && !q.SessionNoURI {
		w.Header().Set("Location", sessionsPath+"/"+s.id)
	}
	answer := sessionBody(s)
	if q.SessionNoURI {
		delete(answer, "@odata.id")
	}
	writeJSON(w, http.StatusCreated, answer, "")
}

func (b *BMC) serveSession(w http.ResponseWriter, r *http.Request, id string) {
	if !allow(w, r, http.MethodGet, http.MethodDelete) {
		return
	}
	b.mu.Lock()
	s := b.sessions[id]
	if s != nil && r.Method == http.MethodDelete {
		delete(b.sessions, id)
	}
	b.mu.Unlock()
	if s == nil {
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "No session "+id+".")
		return
	}
	if r.Method == http.MethodDelete {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, sessionBody(s), "")
}
