{{/*
Expand the name of the chart.
*/}}
{{- define "aws-root-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated at 63 characters (DNS label limit).
*/}}
{{- define "aws-root-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aws-root-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "aws-root-exporter.labels" -}}
helm.sh/chart: {{ include "aws-root-exporter.chart" . }}
{{ include "aws-root-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "aws-root-exporter.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (immutable on Deployments and StatefulSets: never add to them).
*/}}
{{- define "aws-root-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aws-root-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aws-root-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aws-root-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image: registry/repository, then @digest or :tag (tag defaults to appVersion).
*/}}
{{- define "aws-root-exporter.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "aws-root-exporter.sharded" -}}
{{- if gt (int .Values.sharding.shards) 1 }}true{{ end }}
{{- end }}

{{/*
The exporter's YAML config file: .Values.config overlaid with .Values.extraConfig.
The chart-managed settings (shard, state file) come from the environment, which wins.
*/}}
{{- define "aws-root-exporter.configFile" -}}
{{- $config := mustMergeOverwrite (deepCopy .Values.config) (deepCopy .Values.extraConfig) }}
{{- if $config }}
{{- toYaml $config }}
{{- else }}
{}
{{- end }}
{{- end }}

{{/*
TLS and basic auth (webConfig). The chart cannot read the web config Secret, so
webConfig.tls / clientCertificates / basicAuth say what the file turns on.
*/}}
{{- define "aws-root-exporter.webConfigDir" -}}/etc/aws-root-exporter-web{{- end }}
{{- define "aws-root-exporter.probeCredentialsDir" -}}/etc/aws-root-exporter-credentials{{- end }}

{{- define "aws-root-exporter.scheme" -}}
{{- if .Values.webConfig.tls }}https{{ else }}http{{ end }}
{{- end }}

{{/*
Checks the webConfig values once; fails with a message naming the value to set.
*/}}
{{- define "aws-root-exporter.webConfigChecks" -}}
{{- $w := .Values.webConfig }}
{{- if and (or $w.tls $w.basicAuth $w.clientCertificates $w.tlsSecret) (not $w.existingSecret) }}
{{- fail "webConfig.tls, webConfig.basicAuth, webConfig.clientCertificates and webConfig.tlsSecret describe the web config file: set webConfig.existingSecret to the Secret holding it" }}
{{- end }}
{{- if and $w.existingSecret (not (or $w.tls $w.basicAuth)) }}
{{- fail "webConfig.existingSecret is set but neither webConfig.tls nor webConfig.basicAuth is true: say what the web config file turns on (the chart cannot read the Secret, and its probes, ServiceMonitor and helm test depend on it)" }}
{{- end }}
{{- if and $w.clientCertificates (not $w.tls) }}
{{- fail "webConfig.clientCertificates needs webConfig.tls: client certificates are part of tls_server_config" }}
{{- end }}
{{- range .Values.extraArgs }}
{{- if hasPrefix "--web.config.file" (toString .) }}
{{- fail "extraArgs: do not pass --web.config.file, set webConfig.existingSecret (the chart then switches the probes, ServiceMonitor and helm test to HTTPS/basic auth)" }}
{{- end }}
{{- end }}
{{- $probe := include "aws-root-exporter.probeMode" . }}
{{- if and (eq $probe "exec") $w.clientCertificates }}
{{- fail "webConfig.probeType exec cannot present a client certificate (webConfig.clientCertificates): use tcpSocket or auto" }}
{{- end }}
{{- if and (eq $probe "exec") $w.basicAuth (not $w.credentialsSecret.name) }}
{{- fail "webConfig.basicAuth: the exec probes need the password: set webConfig.credentialsSecret.name (a Secret with the user name and plain password), or webConfig.probeType=tcpSocket" }}
{{- end }}
{{- if .Values.serviceMonitor.enabled }}
{{- if and $w.basicAuth (not $w.credentialsSecret.name) }}
{{- fail "webConfig.basicAuth with serviceMonitor.enabled: set webConfig.credentialsSecret.name, the Secret (in the ServiceMonitor's namespace) Prometheus reads the user name and password from" }}
{{- end }}
{{- if and $w.clientCertificates (not (and .Values.serviceMonitor.tlsConfig.cert .Values.serviceMonitor.tlsConfig.keySecret)) }}
{{- fail "webConfig.clientCertificates with serviceMonitor.enabled: set serviceMonitor.tlsConfig.cert and serviceMonitor.tlsConfig.keySecret (Prometheus's client certificate)" }}
{{- end }}
{{- if and .Values.serviceMonitor.tlsConfig (not $w.tls) }}
{{- fail "serviceMonitor.tlsConfig is set but webConfig.tls is false: the exporter speaks plain HTTP" }}
{{- end }}
{{- end }}
{{- if and .Values.test.enabled $w.clientCertificates }}
{{- fail "webConfig.clientCertificates: the helm test pod has no client certificate; set test.enabled=false" }}
{{- end }}
{{- if and .Values.test.enabled $w.basicAuth (not $w.credentialsSecret.name) }}
{{- fail "webConfig.basicAuth: the helm test pod needs the password: set webConfig.credentialsSecret.name, or test.enabled=false" }}
{{- end }}
{{- if and .Values.test.caSecret.name (not $w.tls) }}
{{- fail "test.caSecret is set but webConfig.tls is false" }}
{{- end }}
{{- end }}

{{/*
How the kubelet probes the exporter:
- http: httpGet on /-/healthy and /-/ready (scheme HTTPS with webConfig.tls; the kubelet
  does not verify the certificate). Used whenever no credential is needed.
- exec: python in the exporter container fetches the same paths on 127.0.0.1 with the
  basic-auth user from webConfig.credentialsSecret (files/probe.py).
- tcpSocket: only checks that the port accepts connections; readiness then no longer waits
  for the first sweep.
*/}}
{{- define "aws-root-exporter.probeMode" -}}
{{- $w := .Values.webConfig }}
{{- if not (and $w.existingSecret (or $w.basicAuth $w.clientCertificates)) }}http
{{- else if ne $w.probeType "auto" }}{{ $w.probeType }}
{{- else if $w.clientCertificates }}tcpSocket
{{- else }}exec
{{- end }}
{{- end }}

{{- define "aws-root-exporter.probe" -}}
{{- $mode := include "aws-root-exporter.probeMode" .root }}
{{- if eq $mode "http" }}
httpGet:
  path: {{ .path }}
  port: http
  {{- if .root.Values.webConfig.tls }}
  scheme: HTTPS
  {{- end }}
{{- else if eq $mode "exec" }}
exec:
  command:
    - python
    - -I
    - /etc/aws-root-exporter/probe.py
    {{- if .root.Values.webConfig.basicAuth }}
    - --credentials={{ include "aws-root-exporter.probeCredentialsDir" .root }}
    {{- end }}
    - --timeout={{ sub (int .probe.timeoutSeconds | default 5) 1 | max 1 }}
    - {{ include "aws-root-exporter.scheme" .root }}://127.0.0.1:9784{{ .path }}
{{- else }}
tcpSocket:
  port: http
{{- end }}
{{- toYaml .probe | nindent 0 }}
{{- end }}

{{/*
Pod template shared by the Deployment (unsharded) and the StatefulSet (sharded).
*/}}
{{- define "aws-root-exporter.podTemplate" -}}
{{- include "aws-root-exporter.webConfigChecks" . }}
metadata:
  labels:
    {{- include "aws-root-exporter.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "aws-root-exporter.configFile" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "aws-root-exporter.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
  {{- /* Service links would inject AWS_ROOT_EXPORTER_SERVICE_HOST, AWS_ROOT_EXPORTER_PORT...
  for a Service named aws-root-exporter, and the exporter rejects unknown
  AWS_ROOT_EXPORTER_* variables at start-up. */}}
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: exporter
      image: {{ include "aws-root-exporter.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config=/etc/aws-root-exporter/config.yaml
        {{- if .Values.webConfig.existingSecret }}
        - --web.config.file={{ include "aws-root-exporter.webConfigDir" . }}/{{ .Values.webConfig.fileKey }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        {{- if include "aws-root-exporter.sharded" . }}
        - name: AWS_ROOT_EXPORTER_SHARD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        - name: AWS_ROOT_EXPORTER_SHARD_COUNT
          value: {{ .Values.sharding.shards | int | quote }}
        {{- end }}
        {{- if .Values.stateFile.enabled }}
        - name: AWS_ROOT_EXPORTER_STATE_FILE
          value: {{ printf "%s/%s" (trimSuffix "/" .Values.stateFile.mountPath) .Values.stateFile.fileName | quote }}
        {{- end }}
        {{- with .Values.aws.externalId.existingSecret }}
        - name: AWS_ROOT_EXPORTER_EXTERNAL_ID
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.aws.externalId.key }}
        {{- end }}
        {{- with .Values.aws.credentials.existingSecret }}
        - name: AWS_ACCESS_KEY_ID
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.aws.credentials.accessKeyIdKey }}
        - name: AWS_SECRET_ACCESS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.aws.credentials.secretAccessKeyKey }}
        {{- if $.Values.aws.credentials.sessionTokenKey }}
        - name: AWS_SESSION_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $.Values.aws.credentials.sessionTokenKey }}
        {{- end }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: 9784
          protocol: TCP
      livenessProbe:
        {{- include "aws-root-exporter.probe" (dict "root" . "path" "/-/healthy" "probe" .Values.livenessProbe) | nindent 8 }}
      readinessProbe:
        {{- include "aws-root-exporter.probe" (dict "root" . "path" "/-/ready" "probe" .Values.readinessProbe) | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/aws-root-exporter
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if .Values.webConfig.existingSecret }}
        - name: web-config
          mountPath: {{ include "aws-root-exporter.webConfigDir" . }}
          readOnly: true
        {{- end }}
        {{- if and (eq (include "aws-root-exporter.probeMode" .) "exec") .Values.webConfig.basicAuth }}
        - name: probe-credentials
          mountPath: {{ include "aws-root-exporter.probeCredentialsDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.stateFile.enabled }}
        - name: state
          mountPath: {{ .Values.stateFile.mountPath }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "aws-root-exporter.fullname" . }}
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
    {{- with .Values.webConfig.existingSecret }}
    {{- /* One read-only directory: the web config file and, optionally, a TLS Secret
    (e.g. cert-manager's tls.crt/tls.key/ca.crt) beside it, so relative file names in the
    web config resolve. Readable by the pod's group (fsGroup) only. */}}
    - name: web-config
      projected:
        defaultMode: 0440
        sources:
          - secret:
              name: {{ . }}
          {{- with $.Values.webConfig.tlsSecret }}
          - secret:
              name: {{ . }}
          {{- end }}
    {{- end }}
    {{- if and (eq (include "aws-root-exporter.probeMode" .) "exec") .Values.webConfig.basicAuth }}
    - name: probe-credentials
      secret:
        secretName: {{ .Values.webConfig.credentialsSecret.name }}
        defaultMode: 0440
        items:
          - key: {{ .Values.webConfig.credentialsSecret.usernameKey }}
            path: username
          - key: {{ .Values.webConfig.credentialsSecret.passwordKey }}
            path: password
    {{- end }}
    {{- if .Values.stateFile.enabled }}
    - name: state
      emptyDir:
        sizeLimit: {{ .Values.stateFile.sizeLimit }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
