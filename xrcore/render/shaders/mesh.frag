// Blinn-Phong with a headlight and a key light from above, per-structure material, selection
// rim highlight, and the cut face of clipped structures: where a clip plane opens a closed surface
// the viewer sees its back faces, which are drawn as a flat, lit cap facing out of the cut.
in vec3 v_world;
in vec3 v_normal;
flat in uint v_structure;
flat in int v_eye;

uniform vec3 u_eye_pos[2];
uniform samplerBuffer u_materials;  // per structure: colour (linear RGBA), (highlight, shininess, specular, -)
uniform vec4 u_clip[6];
uniform int u_clip_count;
uniform vec3 u_highlight_color;
uniform vec3 u_cap_tint;

out vec4 o_color;

vec3 shade(vec3 base, vec3 n, vec3 v, float shininess, float specular) {
  // headlight at the eye (always lights what you look at) plus a dimmer key light from above
  vec3 lights[2] = vec3[2](v, normalize(vec3(0.3, 1.0, 0.4)));
  float weights[2] = float[2](0.75, 0.35);
  vec3 c = base * 0.12;  // ambient
  for (int i = 0; i < 2; ++i) {
    vec3 l = lights[i];
    float diffuse = max(dot(n, l), 0.0);
    vec3 h = normalize(l + v);
    float spec = diffuse > 0.0 ? pow(max(dot(n, h), 0.0), shininess) : 0.0;
    c += weights[i] * (base * diffuse + vec3(specular * spec));
  }
  return c;
}

void main() {
  int sid = int(v_structure);
  vec4 base = texelFetch(u_materials, 2 * sid);
  vec4 params = texelFetch(u_materials, 2 * sid + 1);  // highlight, shininess, specular
  vec3 v = normalize(u_eye_pos[v_eye] - v_world);
  vec3 color;
  if (gl_FrontFacing) {
    vec3 n = normalize(v_normal);
    color = shade(base.rgb, n, v, params.y, params.z);
    if (params.x > 0.0) {
      // selection: a rim that brightens silhouettes, plus a faint overall tint
      float rim = 1.0 - max(dot(n, v), 0.0);
      color = mix(color, u_highlight_color, params.x * (0.25 + 0.75 * rim * rim));
    }
  } else {
    // Cap: lit as the plane the fragment lies closest to, its normal facing the removed side.
    vec3 n = -v;
    float nearest = 1e9;
    for (int i = 0; i < u_clip_count; ++i) {
      float d = abs(dot(u_clip[i], vec4(v_world, 1.0)));
      if (d < nearest) { nearest = d; n = -u_clip[i].xyz; }
    }
    if (dot(n, v) < 0.0) n = -n;
    color = shade(base.rgb * u_cap_tint, n, v, 8.0, 0.05);
    color = mix(color, u_highlight_color, params.x * 0.25);
  }
  o_color = vec4(color, base.a);
}
