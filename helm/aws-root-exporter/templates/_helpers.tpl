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
Pod template shared by the Deployment (unsharded) and the StatefulSet (sharded).
*/}}
{{- define "aws-root-exporter.podTemplate" -}}
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
        httpGet:
          path: /-/healthy
          port: http
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /-/ready
          port: http
        {{- toYaml .Values.readinessProbe | nindent 8 }}
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
